"""Drop repeated script tags from each page.

With jupyter-book 1.0.4, sphinx-thebe 0.3.1 and Sphinx 7.4 every page
declares ``const THEBE_JS_URL`` twice (once registered with filename None,
once with ""), which a browser reports as a console error ("Identifier
'THEBE_JS_URL' has already been declared"). This extension keeps the first
of the scripts that have the same file, inline body and attributes.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def _key(script) -> tuple:
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((key, str(value)) for key, value in attributes.items())))


def drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
