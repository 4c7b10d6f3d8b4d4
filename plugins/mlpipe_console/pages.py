"""The console's HTML: small self-contained pages (no scripts), every value escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } .ok { color: #176f2c; } .bad { color: #b00020; font-weight: bold; }
.warn { color: #9a5b00; } pre { background: #f7f7f7; padding: 1em; overflow: auto; }
nav a { margin-right: 1em; }
"""


def page(title: str, body: str, prefix: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)} · mlpipe</title><style>{CSS}</style></head><body>"
        f"<nav><a href='{escape(prefix)}/'>mlpipe console</a><a href='/'>Airflow</a></nav>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )


def link(href: str, text: str) -> str:
    return f"<a href='{escape(href, quote=True)}'>{escape(text)}</a>"


def table(headers: list[str], rows: list[list[str]], empty: str = "nothing yet") -> str:
    """Cells are HTML already (escape text with `cell`)."""
    if not rows:
        return f"<p><em>{escape(empty)}</em></p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def status(ok: bool | None, yes: str = "passed", no: str = "failed") -> str:
    if ok is None:
        return ""
    return f"<span class='{'ok' if ok else 'bad'}'>{escape(yes if ok else no)}</span>"


def json_block(doc: Any) -> str:
    return f"<pre>{escape(json.dumps(doc, indent=2, default=str))}</pre>"
