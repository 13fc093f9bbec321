"""A table's Markdown (``ugpnet table``: table1.md, table3.md) as a standalone HTML page.

Snakemake's report (``snakemake --report``) shows images, HTML and PDF; a Markdown or CSV result
is only a download link. The page written here beside each ``.md`` is the same text, rendered:
headings, pipe tables (numbers right-aligned), bullet lists, paragraphs and ``code`` spans,
which is all the Markdown those tables use. No third-party Markdown package: the subset is ours.
"""
from __future__ import annotations

import html
import re

STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
       color: #111827; background: #ffffff; margin: 1.2em; }
h1 { font-size: 1.25em; margin: 0 0 .6em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #cbd5e1; padding: .25em .6em; text-align: left;
         vertical-align: top; }
th { background: #e2e8f0; }
tbody tr:nth-child(even) { background: #f8fafc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
p, li { max-width: 60em; }
code { background: #f1f5f9; padding: 0 .2em; }
"""

_NUMBER = re.compile(r"^[-+]?(\d|\.\d|nan$|inf$)", re.IGNORECASE)


def _inline(text: str) -> str:
    """Escaped ``text`` with ``code`` spans and Markdown's ``\\*`` escape."""
    parts = text.replace("\\*", "*").split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p)
                   for i, p in enumerate(parts))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, rows = _cells(lines[0]), [_cells(x) for x in lines[2:]]
    spec = _cells(lines[1]) if len(lines) > 1 else []
    right = [s.endswith(":") and not s.startswith(":") for s in spec]
    right += [False] * (len(head) - len(right))

    def cls(i: int, text: str, header: bool) -> str:
        numeric = right[i] if i < len(right) else False
        if not header and _NUMBER.match(text):
            numeric = True
        return ' class="num"' if numeric else ""

    out = ["<table>", "<thead><tr>"
           + "".join(f"<th{cls(i, c, True)}>{_inline(c)}</th>" for i, c in enumerate(head))
           + "</tr></thead>", "<tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i, c, False)}>{_inline(c)}</td>"
                                     for i, c in enumerate(row)) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def markdown_page(md: str, title: str | None = None) -> str:
    """The HTML page of a table's Markdown ``md``; ``title`` (default: its first heading) is the
    page's ``<title>``."""
    lines = md.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            text = line[level:].strip()
            title = title or text
            body.append(f"<h{level}>{_inline(text)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:].strip())}</li>")
                i += 1
            body.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        else:
            para = []
            while (i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "- "))
                   and not lines[i].lstrip().startswith("|")):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{_inline(' '.join(para))}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title or 'table')}</title>\n<style>{STYLE}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
