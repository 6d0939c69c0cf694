"""MkDocs hooks: embed the examples' output figures when they exist.

A tutorial page writes ``{{ figure("relaxation.png", "caption") }}`` on a line of its own; the
name may be a glob (``{{ figure("funnel*.png") }}``). Every PNG in ``examples/output/`` is added
to the site under ``figures/``, and the line becomes the matching images (with the caption), or,
when none exists yet, a note that says to run the command shown on the page. Figures are never copied into ``docs/`` and a missing one never
breaks the strict build.
"""

from __future__ import annotations

import pathlib
import re

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIGURES = ROOT / "examples" / "output"
_FIGURE = re.compile(r'^\{\{\s*figure\("([^"]+)"(?:\s*,\s*"([^"]*)")?\)\s*\}\}\s*$', re.MULTILINE)


def on_files(files, config):
    if FIGURES.is_dir():
        for png in sorted(FIGURES.glob("*.png")):
            files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")
    prefix = "../" * depth

    def replace(match: re.Match) -> str:
        pattern, caption = match.group(1), match.group(2) or ""
        found = sorted(FIGURES.glob(pattern)) if FIGURES.is_dir() else []
        if found:
            images = [f"![{caption or png.name}]({prefix}figures/{png.name})" for png in found]
            text = "\n\n".join(images)
            return f"{text}\n\n*{caption}*" if caption else text
        return (
            '!!! note "Figure not built yet"\n'
            f"    Running the command above writes `examples/output/{pattern}`; build the docs "
            "again afterwards and the figure appears here."
        )

    return _FIGURE.sub(replace, markdown)
