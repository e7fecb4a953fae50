"""A markdown report as one HTML page a person opens in a browser: the figures embedded (the page
travels alone), tables styled, and each verdict ("yes", "no", "unclear") readable at a glance.

The findings report (`make report`) and the results table (`make table`) are written both ways: the
markdown for GitHub and diffs, the page for reading.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .errors import CodesiftError

VERDICTS = {"yes": "agrees", "no": "does not agree", "unclear": "unclear", "-": "not measured"}

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; max-width: 1100px;
       margin: 2em auto; padding: 0 1.5em; }
h1, h2, h3 { line-height: 1.25; } h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 6px 10px; vertical-align: top; text-align: left; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0 .3em; }
code { background: #f6f8fa; padding: .1em .3em; border-radius: 4px; font-size: 90%; }
td.verdict { font-weight: 600; white-space: nowrap; text-align: center; }
td.verdict-yes { background: #dafbe1 !important; color: #116329; }
td.verdict-no { background: #ffebe9 !important; color: #a40e26; }
td.verdict-unclear { background: #fff8c5 !important; color: #7d4e00; }
td.verdict-none { color: #57606a; }
"""


def markdown_to_html(text: str) -> str:
    """GitHub-flavoured enough: tables, code, images (mistune, which nbconvert already needs)."""
    import mistune

    return mistune.create_markdown(plugins=["table", "strikethrough"], escape=False)(text)


def embed_images(body: str, folder: Path) -> str:
    """Every local <img src> as a data: URI, so the page needs nothing beside it. A missing image
    is an error: the page would otherwise show a broken picture."""

    def embed(match: re.Match) -> str:
        source = html.unescape(match.group(2))
        if source.startswith(("data:", "http://", "https://")):
            return match.group(0)
        file = folder / source
        if not file.is_file():
            raise CodesiftError(f"the report links a figure that is not there: {file}")
        data = base64.b64encode(file.read_bytes()).decode()
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    return re.sub(r'(<img[^>]*?\bsrc=)"([^"]+)"', embed, body)


def mark_verdicts(body: str) -> str:
    """A table cell holding only a verdict gets a class (its colour) and a title (its words)."""

    def mark(match: re.Match) -> str:
        word = match.group(1)
        kind = {"yes": "yes", "no": "no", "unclear": "unclear"}.get(word, "none")
        return f'<td class="verdict verdict-{kind}" title="{VERDICTS[word]}">{word}</td>'

    return re.sub(r"<td>\s*(yes|no|unclear|-)\s*</td>", mark, body)


def write_report_page(
    markdown_path: str | Path, html_path: str | Path | None = None, title: str | None = None
) -> Path:
    """Write `markdown_path` as a self-contained HTML page (default: the same name, .html); images
    are resolved relative to the markdown's folder. Returns the page's path."""
    markdown_path = Path(markdown_path)
    html_path = Path(html_path) if html_path else markdown_path.with_suffix(".html")
    text = markdown_path.read_text()
    if title is None:
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        title = heading.group(1) if heading else markdown_path.stem
    body = mark_verdicts(embed_images(markdown_to_html(text), markdown_path.parent))
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    partial = html_path.with_name(f".{html_path.name}.tmp")
    partial.write_text(page)
    partial.replace(html_path)  # whole or not at all
    return html_path
