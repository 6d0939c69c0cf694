"""Griffe extension: render the package's reStructuredText markup in Markdown.

The docstrings are numpydoc with Sphinx roles (``:math:``, ``:class:`` …) and ``.. math::``
blocks, so they also read well in ``help()`` and in editors. mkdocstrings renders Markdown, so
before a docstring is parsed this extension rewrites

* ``.. math::`` blocks into ``$$ … $$`` display maths and ``:math:`x``` into ``$x$`` (rendered by
  MathJax through ``pymdownx.arithmatex``);
* ``:class:`` / ``:func:`` / ``:mod:`` / … roles into *optional* cross-references: a link when
  the target is documented on some page, plain code otherwise (so a reference to an undocumented
  object never breaks the strict build, and a new API page makes it a link automatically);
* ```text <url>`_`` links into Markdown links, and ``paragraph::`` (a literal block follows)
  into ``paragraph:``.

Configured in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

PACKAGE = "numpyro_langevin"

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<([^>]+)>`_{1,2}")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[*+-]|\d+[.)])\s")


def _math_blocks(text: str) -> str:
    """``.. math::`` + indented block -> ``$$`` block at the directive's indentation."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group(1)
        target = _block_indent(out, indent)
        i += 1
        body: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        content = [line.strip() for line in body if line.strip()]
        out.extend([f"{target}$$", *(f"{target}{line}" for line in content), f"{target}$$", ""])
    return "\n".join(out)


def _block_indent(previous: list[str], indent: str) -> str:
    """Indentation for a display block at ``indent``.

    Markdown continues a list item only with 4 spaces per level, where reStructuredText aligns
    with the item's text; re-indent a block that belongs to a list item accordingly.
    """
    for line in reversed(previous):
        if not line.strip():
            continue
        line_indent = len(line) - len(line.lstrip())
        if line_indent < len(indent):
            if _LIST_ITEM.match(line):
                return " " * (line_indent + 4)
            return indent
    return indent


def _literal_markers(text: str) -> str:
    """RST ``paragraph::`` (a literal block follows) -> ``paragraph:``; a lone `` ::`` is dropped."""
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.endswith("::") and not _MATH_DIRECTIVE.match(line) and ".. " not in line:
            body = stripped[:-2]
            line = body.rstrip() if body.endswith(" ") or not body.strip() else body + ":"
        lines.append(line)
    return "\n".join(lines)


def _qualify(target: str, obj: griffe.Object) -> str:
    target = target.strip().removesuffix("()")
    if target.startswith(f"{PACKAGE}.") or target == PACKAGE:
        return target
    if "." not in target:
        # A name in the same module, or a member of the class being documented.
        scope = obj if obj.is_class else obj.parent if obj.parent is not None else obj
        module = obj.module.path if obj.module is not None else PACKAGE
        if scope is not None and target in getattr(scope, "members", {}):
            return f"{scope.path}.{target}"
        return f"{module}.{target}"
    return target


def _xref(match: re.Match, obj: griffe.Object) -> str:
    short, target = match.group(1) == "~", match.group(2)
    shown = target.strip().removesuffix("()")
    if short:
        shown = shown.rsplit(".", 1)[-1]
    identifier = _qualify(target, obj)
    code = f"<code>{html.escape(shown)}</code>"
    if not identifier.startswith(PACKAGE):
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def rst_to_markdown(text: str, obj: griffe.Object) -> str:
    """Rewrite the reStructuredText markup of one docstring."""
    text = _literal_markers(_math_blocks(text))
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _XREF_ROLE.sub(lambda m: _xref(m, obj), text)
    return _RST_LINK.sub(lambda m: f"[{m.group(1)}]({m.group(2)})", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring of the package once its object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.path.startswith(PACKAGE):
            obj.docstring.value = rst_to_markdown(obj.docstring.value, obj)
