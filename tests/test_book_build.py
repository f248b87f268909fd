"""The build command on small temporary books: strictness and the cache.

Each test copies the real configuration into a temporary book with one or
two tiny chapters and runs `make book BOOK_DIR=<that book>`, the command the
README gives, so the flags and cache rules under test are the real ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import config_variant  # noqa: E402
import sync_notebooks  # noqa: E402

HEADER = """---
jupytext:
  formats: md:myst
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def chapter(title: str, code: str, prose: str = "Some prose.") -> str:
    return f"{HEADER}\n# {title}\n\n{prose}\n\n```{{code-cell}} ipython3\n{code}\n```\n"


def make_book(root: Path, chapters: dict[str, str]) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copy(ROOT / "references.bib", root / "references.bib")
    shutil.copytree(ROOT / "_ext", root / "_ext")
    shutil.copytree(ROOT / "_static", root / "_static")
    shutil.copy(ROOT / "book" / "bibliography.md", root / "book" / "bibliography.md")
    for name, text in chapters.items():
        write_chapter(root, name, text)
    names = list(chapters)
    toc = {
        "format": "jb-book",
        "root": f"book/{names[0]}",
        "chapters": [{"file": f"book/{name}"} for name in names[1:]] + [{"file": "book/bibliography"}],
    }
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return root


def write_chapter(root: Path, name: str, text: str) -> None:
    source = root / "book" / f"{name}.md"
    source.write_text(text)
    (root / "notebooks" / f"{name}.ipynb").write_text(sync_notebooks.render_twin(source))


def build(book: Path, ci: bool = False, profile: str = "ci") -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["NOISYPO_PROFILE"] = profile
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "book", f"BOOK_DIR={book}"],
        env=env, capture_output=True, text=True, timeout=600,
    )


def test_failing_cell_fails_build(tmp_path):
    book = make_book(
        tmp_path / "broken",
        {"good": chapter("Good", "1 + 1"), "bad": chapter("Bad", "raise RuntimeError('on purpose')")},
    )
    result = build(book)
    assert result.returncode != 0, result.stdout[-2000:]
    assert (book / "_build" / "html" / "reports").is_dir()


def test_sphinx_warning_fails_build(tmp_path):
    book = make_book(tmp_path / "warn", {"good": chapter("Good", "1 + 1", "See {ref}`no-such-label`.")})
    result = build(book)
    assert result.returncode != 0, result.stdout[-2000:]


def test_prose_edit_uses_execution_cache(tmp_path):
    log = tmp_path / "executions.log"
    code = f"with open({str(log)!r}, 'a') as handle:\n    handle.write('run\\n')"
    book = make_book(
        tmp_path / "cached",
        {"first": chapter("First", code), "second": chapter("Second", "2 + 2")},
    )
    assert build(book).returncode == 0
    assert log.read_text().count("run") == 1

    write_chapter(book, "first", chapter("First", code, "Edited prose only."))
    result = build(book)
    assert result.returncode == 0, result.stdout[-2000:]
    assert log.read_text().count("run") == 1
    assert "Edited prose only." in (book / "_build" / "html" / "book" / "first.html").read_text()

    # Under CI every chapter executes again from scratch.
    assert build(book, ci=True).returncode == 0
    assert log.read_text().count("run") == 2

    # The cache key is the code, not the profile: a new profile re-executes.
    assert build(book, profile="cpu").returncode == 0
    assert log.read_text().count("run") == 3


def test_colab_link_points_at_twin(tmp_path):
    book = make_book(tmp_path / "colab", {"page": chapter("Page", "1 + 1")})
    result = build(book)
    assert result.returncode == 0, result.stdout[-2000:]
    html = (book / "_build" / "html" / "book" / "page.html").read_text()
    url, branch = sync_notebooks.repository()
    assert f"{url.replace('https://github.com', 'https://colab.research.google.com/github')}/blob/{branch}/notebooks/page.ipynb" in html


def test_missing_twin_fails_build(tmp_path):
    book = make_book(tmp_path / "notwin", {"page": chapter("Page", "1 + 1")})
    (book / "notebooks" / "page.ipynb").unlink()
    result = build(book)
    assert result.returncode != 0
    assert "has no notebook twin" in result.stdout + result.stderr


EXERCISE = """
```{exercise}
:label: ex-square

Compute $2^2$.
```

```{solution} ex-square
:class: dropdown

The answer is SOLUTION-MARKER.
```
"""


def test_student_build_hides_solutions(tmp_path):
    book = make_book(tmp_path / "course", {"page": chapter("Page", "1 + 1", EXERCISE)})
    assert build(book).returncode == 0
    assert "SOLUTION-MARKER" in (book / "_build" / "html" / "book" / "page.html").read_text()

    config = config_variant.variant(hide_solutions=True)
    (book / "_config_student.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book), "-W", "-n",
         "--keep-going", "--config", str(book / "_config_student.yml"),
         "--path-output", str(book / "_build" / "student")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    student = (book / "_build" / "student" / "_build" / "html" / "book" / "page.html").read_text()
    assert "Compute" in student
    assert "SOLUTION-MARKER" not in student
