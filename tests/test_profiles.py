from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from noisypo import profiles

ROOT = Path(__file__).resolve().parents[1]


def test_env_var_forces_profile(monkeypatch):
    monkeypatch.setenv("NOISYPO_PROFILE", "GPU")
    choice = profiles.current_profile()
    assert choice.name == "gpu"
    assert "NOISYPO_PROFILE" in choice.reason


def test_invalid_env_var_raises(monkeypatch):
    monkeypatch.setenv("NOISYPO_PROFILE", "tiny")
    with pytest.raises(ValueError, match="tiny"):
        profiles.current_profile()


@pytest.mark.parametrize(("cuda", "expected"), [(True, "gpu"), (False, "cpu")])
def test_auto_profile_follows_cuda(monkeypatch, cuda, expected):
    monkeypatch.delenv("NOISYPO_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "_cuda_available", lambda: cuda)
    assert profiles.current_profile().name == expected


def test_sizes_are_read_only():
    table = profiles.sizes("intro", "ci")
    with pytest.raises(TypeError):
        table["new"] = 1  # type: ignore[index]


def test_unknown_chapter_raises():
    with pytest.raises(KeyError, match="no sizes for chapter"):
        profiles.sizes("no-such-chapter", "ci")


def _toc_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [entry["file"] for entry in part["chapters"]]
    return files


def test_every_notebook_chapter_has_three_profiles():
    missing = []
    for file in _toc_chapters():
        source = ROOT / f"{file}.md"
        if not source.is_file() or "format_name: myst" not in source.read_text()[:2000]:
            continue
        name = Path(file).name
        for profile in profiles.PROFILES:
            try:
                profiles.sizes(name, profile)
            except KeyError:
                missing.append(f"[{name}.{profile}]")
    assert not missing, f"profiles.toml lacks {', '.join(missing)}"


def test_describe_names_profile_and_device(monkeypatch):
    monkeypatch.setenv("NOISYPO_PROFILE", "ci")
    line = profiles.describe()
    assert line.startswith("profile ci")
    assert "device" in line
