"""Point each page's Colab button at the page's committed ``.ipynb`` twin.

sphinx-book-theme links Colab to the page source, which for this book is a
MyST Markdown file that Colab cannot open. The twin of ``book/<name>.md``
is ``notebooks/<name>.ipynb`` (written by ``tools/sync_notebooks.py``); this
extension rewrites the link after the theme has built it and warns, which
fails a ``-W`` build, when a chapter has no twin.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

SOURCE_FOLDER = "book"


def _buttons(items):
    for item in items or []:
        yield item
        yield from _buttons(item.get("buttons"))
        yield from _buttons(item.get("items"))


def twin_path(pagename: str, twins_folder: str) -> str | None:
    """Return the repository path of a page's twin, or None for non-chapter pages."""
    page = PurePosixPath(pagename)
    if not page.parts or page.parts[0] != SOURCE_FOLDER:
        return None
    return str(PurePosixPath(twins_folder, *page.parts[1:]).with_suffix(".ipynb"))


def rewrite_colab_link(app: Sphinx, pagename, templatename, context, doctree) -> None:
    twin = twin_path(pagename, app.config.colab_twins_folder)
    if twin is None:
        return
    for button in _buttons(context.get("header_buttons")):
        url = button.get("url", "")
        if button.get("text") != "Colab" or "/blob/" not in url:
            continue
        if not (Path(app.confdir) / twin).is_file():
            logger.warning(
                "page %s has no notebook twin %s; run `make notebooks`", pagename, twin,
                location=pagename,
            )
        head, _, _ = url.partition("/blob/")
        branch = app.config.html_theme_options.get("repository_branch", "main")
        button["url"] = f"{head}/blob/{branch}/{twin}"


def setup(app: Sphinx):
    app.add_config_value("colab_twins_folder", "notebooks", "html")
    # The theme adds its launch buttons at priority 501; run after it.
    app.connect("html-page-context", rewrite_colab_link, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
