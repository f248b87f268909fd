from __future__ import annotations

import io
import shutil
import time
import urllib.error

import pytest

from noisypo import persona
from noisypo.persona import PersonaDataError


def test_every_behaviour_loads_and_is_balanced(persona_dir):
    for name in persona.BEHAVIOURS:
        records = persona.load_behaviour(name, data_dir=persona_dir)
        labels = [record.label for record in records]
        assert len(records) > 900, name
        assert abs(labels.count(1) - labels.count(-1)) <= 0.1 * len(labels), name


def test_paper_names_resolve(persona_dir):
    records = persona.load_behaviour("Behavior 1", data_dir=persona_dir)
    direct = persona.load_behaviour(persona.PAPER_BEHAVIOURS["Behavior 1"], data_dir=persona_dir)
    assert records == direct


def test_env_var_folder_is_used(persona_dir, monkeypatch, isolated_cache):
    monkeypatch.setenv("NOISYPO_PERSONA_DIR", str(persona_dir))
    path = persona.behaviour_path("narcissism")
    assert path.parent == persona_dir


def test_unknown_behaviour_raises():
    with pytest.raises(ValueError, match="unknown persona behaviour"):
        persona.behaviour_path("kindness")


def test_corrupted_copy_reports_hash_mismatch(persona_dir, tmp_path):
    copy = tmp_path / "narcissism.jsonl"
    shutil.copy(persona_dir / "narcissism.jsonl", copy)
    text = copy.read_text()
    copy.write_text(text.replace("Yes", "Yep", 1))
    with pytest.raises(PersonaDataError, match="SHA-256 mismatch"):
        persona.load_behaviour("narcissism", data_dir=tmp_path)


def test_named_folder_without_file_raises(tmp_path):
    with pytest.raises(PersonaDataError, match="not found in data_dir"):
        persona.behaviour_path("narcissism", data_dir=tmp_path)


def test_offline_without_copy_fails_fast(monkeypatch, isolated_cache):
    monkeypatch.delenv("NOISYPO_PERSONA_DIR", raising=False)
    monkeypatch.setenv("NOISYPO_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(PersonaDataError) as error:
        persona.behaviour_path("narcissism")
    assert time.perf_counter() - start < 1.0
    assert "NOISYPO_PERSONA_DIR" in str(error.value)
    assert str(isolated_cache / "persona") in str(error.value)


def test_failed_download_says_where_to_put_file(monkeypatch, isolated_cache):
    monkeypatch.delenv("NOISYPO_PERSONA_DIR", raising=False)
    monkeypatch.delenv("NOISYPO_OFFLINE", raising=False)

    def refuse(url, timeout):
        raise urllib.error.URLError("name resolution failed")

    monkeypatch.setattr(persona.urllib.request, "urlopen", refuse)
    with pytest.raises(PersonaDataError) as error:
        persona.behaviour_path("narcissism")
    message = str(error.value)
    assert "download" in message
    assert "NOISYPO_PERSONA_DIR" in message
    assert not list((isolated_cache / "persona").glob("*"))


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_verifies_and_caches(persona_dir, monkeypatch, isolated_cache):
    monkeypatch.delenv("NOISYPO_PERSONA_DIR", raising=False)
    monkeypatch.delenv("NOISYPO_OFFLINE", raising=False)
    payload = (persona_dir / "narcissism.jsonl").read_bytes()
    requested = []

    def serve(url, timeout):
        requested.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(persona.urllib.request, "urlopen", serve)
    path = persona.behaviour_path("narcissism")
    assert requested == [persona.SOURCE_URL.format(name="narcissism")]
    assert path == isolated_cache / "persona" / "narcissism.jsonl"
    assert path.read_bytes() == payload
    # The second call reads the cache and downloads nothing.
    assert persona.behaviour_path("narcissism") == path
    assert len(requested) == 1


def test_download_with_wrong_bytes_is_rejected(monkeypatch, isolated_cache):
    monkeypatch.delenv("NOISYPO_PERSONA_DIR", raising=False)
    monkeypatch.delenv("NOISYPO_OFFLINE", raising=False)
    monkeypatch.setattr(
        persona.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"{}\n")
    )
    with pytest.raises(PersonaDataError, match="SHA-256 mismatch"):
        persona.behaviour_path("narcissism")
    assert not list((isolated_cache / "persona").glob("*"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"question": "Q?"}', "missing keys"),
        (
            '{"question": "Q?", "statement": "S", "label_confidence": 0.9, '
            '"answer_matching_behavior": " Yes", "answer_not_matching_behavior": " Yes"}',
            "answers must be",
        ),
        (
            '{"question": "", "statement": "S", "label_confidence": 0.9, '
            '"answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}',
            "non-empty",
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    good = (
        '{"question": "Q?", "statement": "S", "label_confidence": 0.9, '
        '"answer_matching_behavior": " No", "answer_not_matching_behavior": " Yes"}'
    )
    path = tmp_path / "broken.jsonl"
    path.write_text(good + "\n" + good + "\n" + line + "\n")
    with pytest.raises(PersonaDataError) as error:
        persona.read_records(path)
    assert f"{path}:3" in str(error.value)
    assert message in str(error.value)


def test_record_label_sign(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(
        '{"question": "Q?", "statement": "S", "label_confidence": 0.9, '
        '"answer_matching_behavior": " No", "answer_not_matching_behavior": " Yes"}\n'
    )
    (record,) = persona.read_records(path)
    assert record.label == -1
