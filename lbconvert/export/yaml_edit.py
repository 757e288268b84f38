"""Edit values in YAML text line by line, so the user's comments and layout survive.

PyYAML drops comments when it dumps; ruamel.yaml keeps them but is one more dependency.
Our rewrites change a handful of scalars and short lists, which a line edit does well.
Every result is re-parsed and compared with the document it must equal; anything this
editor cannot do (a new mapping, flow mappings, multi-line scalars) returns None and the
caller dumps the document in full instead.
"""

from __future__ import annotations

import re
from typing import Any

_KEY_LINE = r"^(?P<indent>[ ]*)(?P<q>['\"]?){key}(?P=q)[ ]*:(?=[ ]|$)"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _flow(value: Any) -> str | None:
    """One-line YAML for a scalar or a list of scalars, or None."""
    import yaml

    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value)
    ):
        return None
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
    text = text.strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return None if "\n" in text else text


def _block_end(lines: list[str], start: int, stop: int, indent: int) -> int:
    """First line index ≥ start whose content is at or left of ``indent`` (or ``stop``)."""
    for j in range(start, stop):
        if _is_content(lines[j]) and _indent(lines[j]) <= indent:
            return j
    return stop


def _find_key(lines: list[str], start: int, stop: int, key: str) -> tuple[int | None, int]:
    """(line index of ``key`` among the block's direct children, the children's indent)."""
    child = next((_indent(lines[j]) for j in range(start, stop) if _is_content(lines[j])), None)
    if child is None:
        return None, -1
    pattern = re.compile(_KEY_LINE.format(key=re.escape(key)))
    for j in range(start, stop):
        m = pattern.match(lines[j])
        if m and len(m.group("indent")) == child:
            return j, child
    return None, child


def _split_comment(rest: str) -> tuple[str, str]:
    """Split ``value  # comment``; a ``#`` inside quotes does not start a comment."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            value = rest[:i].rstrip()
            return value, rest[len(value):].rstrip("\n")
    return rest.rstrip("\n").rstrip(), ""


def _set_one(lines: list[str], dotted: str, value: Any) -> bool:
    parts = dotted.split(".")
    start, stop, parent_indent = 0, len(lines), -1
    for depth, part in enumerate(parts):
        j, child = _find_key(lines, start, stop, part)
        last = depth == len(parts) - 1
        if j is None:
            if not last:
                return False
            flow = _flow(value)
            if flow is None:
                return False
            indent = child if child >= 0 else parent_indent + 2
            at = stop
            while at > start and not _is_content(lines[at - 1]):
                at -= 1
            if at > 0 and not lines[at - 1].endswith("\n"):
                lines[at - 1] += "\n"
            lines.insert(at, " " * indent + f"{part}: {flow}\n")
            return True
        if not last:
            start, stop, parent_indent = j + 1, _block_end(lines, j + 1, stop, child), child
            continue
        m = re.compile(_KEY_LINE.format(key=re.escape(part))).match(lines[j])
        head, rest = lines[j][: m.end()], lines[j][m.end():]
        old, comment = _split_comment(rest)
        newline = "\n" if lines[j].endswith("\n") else ""
        if old.strip():
            flow = _flow(value)
            if flow is None or old.strip()[:1] in "|>{":
                return False
            gap = "" if comment[:1] in (" ", "\t") or not comment else " "
            lines[j] = f"{head} {flow}{gap}{comment}{newline}"
            return True
        # A block value: only a block list of scalars is edited in place. Its items may sit
        # at the key's own indent ("key:\n- 1"), as PyYAML writes them.
        end = j + 1
        while end < stop and (not _is_content(lines[end]) or _indent(lines[end]) > child or (
                _indent(lines[end]) == child and lines[end].lstrip().startswith("- "))):
            end += 1
        items = [k for k in range(j + 1, end) if _is_content(lines[k])]
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            return False
        if not items or not all(lines[k].lstrip().startswith("- ") for k in items):
            return False
        item_indent = _indent(lines[items[0]])
        rendered = []
        for v in value:
            flow = _flow(v)
            if flow is None:
                return False
            rendered.append(" " * item_indent + f"- {flow}\n")
        lines[items[0]: items[-1] + 1] = rendered
        return True
    return False


def patch_yaml(text: str, changes: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """Apply ``changes`` (dotted key → new value) to YAML ``text``; None if it cannot.

    The result is returned only when it parses to exactly ``expected``.
    """
    import yaml

    lines = text.splitlines(keepends=True)
    for dotted, value in changes.items():
        if not _set_one(lines, dotted, value):
            return None
    patched = "".join(lines)
    try:
        if yaml.safe_load(patched) != expected:
            return None
    except yaml.YAMLError:
        return None
    return patched
