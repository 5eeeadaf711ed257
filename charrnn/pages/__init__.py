"""What charrnn's HTML pages share: the page head (page_head.html: the same body and header
look) and writing a page to disk.

    out = write_html(Path("report.html"), page_head("my-run · charrnn report") + css + body)
"""

from __future__ import annotations

import html
from pathlib import Path


def page_head(title: str) -> str:
    """The start of every charrnn page, up to inside its <style>."""
    head = Path(__file__).with_name("page_head.html").read_text(encoding="utf-8")
    return head.replace("__TITLE__", html.escape(title))


def write_html(out: Path, page: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
