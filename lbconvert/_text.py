"""Shortening a message for one line: at a word boundary, marked with "…", never mid-word.

A third-party error quoted in a note or a table cell (torch.fx's TraceError, onnxruntime's
errors) can run to several hundred characters; cutting it at a fixed index ends it mid-word
("check out the Proxy docstring for hel"), which reads as a rendering bug.
"""

from __future__ import annotations

ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest prefix that ends at a word
    boundary and fits with ``…`` appended (a single over-long word is cut, and marked)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    room = max(limit - len(ELLIPSIS), 1)
    head = text[:room + 1]
    cut = head.rfind(" ")
    head = head[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ,;:(") + ELLIPSIS


def first_line(exc: BaseException | str, limit: int) -> str:
    """The first line of an exception's message (or of ``exc`` as text), clipped to ``limit``."""
    lines = str(exc).strip().splitlines()
    return clip(lines[0] if lines else "", limit)
