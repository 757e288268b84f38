"""Config documents: parse YAML / TOML / JSON into a dict that remembers each key's line.

One loader for ``convert``/``plan`` and ``audit``. YAML is read leniently: the tags tools
write into their config dumps (``!!python/name:``, ``!!python/object:``, ``!!python/tuple``,
custom ``!Tag``) are read as plain data, never executed — Lightning's ``hparams.yaml`` with an
activation class, say, loads. W&B's ``files/config.yaml`` (``key: {desc:, value:}``) is
unwrapped to ``key: value``.

No torch import here.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbconvert.errors import LbconvertError

FILE_TYPES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


@dataclass
class Document:
    """A parsed config: ``data`` (a mapping), where it came from and each key's line.

    ``path`` is None for in-memory configs (TensorBoard hparams, MLflow params, a dict);
    ``label`` names the source in messages (the file name, or e.g. "MLflow params").
    ``lines`` maps a key path (tuple of key names) to its 1-based line in the file.
    """

    data: dict[str, Any]
    path: Path | None = None
    file_type: str | None = None
    label: str = ""
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, dotted: str) -> int | None:
        """1-based line of the key at dotted path ``dotted`` (e.g. ``"optimizer.lr"``)."""
        return self.lines.get(tuple(dotted.split(".")))

    @property
    def source_file(self) -> str | None:
        """The file as a string, or None for in-memory configs."""
        return None if self.path is None else str(self.path)


def load_document(path: str | Path) -> Document:
    """Read a YAML / TOML / JSON file into a :class:`Document`.

    Raises LbconvertError naming the file (and line, when the parser gives one) when it is
    missing, unreadable, not parseable or not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise LbconvertError(f"config file {path} does not exist",
                             hint="check the path given to --config")
    if path.is_dir():
        raise LbconvertError(f"config path {path} is a directory",
                             hint="pass a YAML, TOML or JSON file to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LbconvertError(f"cannot read config file {path} ({exc})",
                             hint="pass a readable UTF-8 YAML, TOML or JSON file") from exc
    file_type = FILE_TYPES.get(path.suffix.lower())
    if file_type is None:
        file_type = "json" if text.lstrip().startswith("{") else "yaml"
    return parse_document(text, file_type, path)


def parse_document(text: str, file_type: str, path: Path | None = None,
                   label: str = "") -> Document:
    """Parse config ``text`` of ``file_type`` (yaml | toml | json) into a :class:`Document`."""
    where = path if path is not None else (label or "config text")
    if file_type == "yaml":
        data, lines = _parse_yaml(text, where)
    else:
        data = _parse_json(text, where) if file_type == "json" else _parse_toml(text, where)
        lines = {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LbconvertError(f"config file {where} is a {type(data).__name__}, not a mapping "
                             "of keys", hint="the top level must be key: value pairs")
    if not lines:
        lines = _regex_lines(text, data)
    data, lines = unwrap_wandb(data, lines)
    return Document(data, path, file_type, label or (path.name if path else ""), lines)


def read_document(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a YAML/TOML/JSON file into a dict; return it with its file type."""
    doc = load_document(path)
    return doc.data, doc.file_type or "yaml"


def mapping_document(data: dict[str, Any], label: str) -> Document:
    """An in-memory config (TensorBoard hparams, MLflow params, a dict) as a Document."""
    return Document(dict(data), None, None, label, {})


def _parse_json(text: str, where: Any) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LbconvertError(f"cannot parse {where} as JSON (line {exc.lineno}, column "
                             f"{exc.colno}: {exc.msg})", hint="fix the JSON syntax") from exc


def _parse_toml(text: str, where: Any) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise LbconvertError(f"reading TOML ({where}) needs Python ≥ 3.11 or the tomli "
                                 "package", hint="pip install tomli") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LbconvertError(f"cannot parse {where} as TOML ({exc})",
                             hint="fix the TOML syntax") from exc


@functools.lru_cache(maxsize=1)  # one class, not one per file: a sweep reads thousands
def _lenient_loader() -> type[Any]:
    import yaml

    # libyaml's parser when built in (faster than the pure-Python one; same nodes and marks
    # for the key lines)
    # The base is chosen at run time, so the type checker cannot see it.
    class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """SafeLoader that reads python/* and custom ``!`` tags as plain data."""

    def _any(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_scalar(node)
        # !!python/name:torch.nn.ReLU '' names a class: keep the name.
        if value == "" and suffix.startswith(("name:", "module:")):
            return suffix.split(":", 1)[1]
        return value

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", _any)
    _Loader.add_multi_constructor("!", _any)
    return _Loader


def _parse_yaml(text: str, where: Any) -> tuple[Any, dict[tuple[str, ...], int]]:
    import yaml

    try:
        loader = _lenient_loader()(text)
        try:
            node = loader.get_single_node()
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LbconvertError(f"cannot parse {where} as YAML ({pos}: {problem})",
                             hint="fix the YAML syntax there") from exc
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    return data, lines


def _node_lines(node: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        path = (*prefix, str(key_node.value))
        out.setdefault(path, key_node.start_mark.line + 1)
        _node_lines(value_node, path, out)


def _regex_lines(text: str, data: dict[str, Any]) -> dict[tuple[str, ...], int]:
    """Lines for JSON / TOML keys: each key searched after its parent's line."""
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    out: dict[tuple[str, ...], int] = {}

    def walk(d: dict[str, Any], prefix: tuple[str, ...], offset: int) -> None:
        for key, value in d.items():
            pat = re.compile(r'^\s*-?\s*\[?["\']?' + re.escape(str(key)) + r'["\']?\s*[:=\]]',
                             re.MULTILINE)
            m = pat.search(text, offset) or pat.search(text)
            if m is None:
                continue
            line = text.count("\n", 0, m.start()) + 1
            path = (*prefix, str(key))
            out.setdefault(path, line)
            if isinstance(value, dict):
                walk(value, path, m.start())

    walk(data, (), 0)
    return out


def find_line(text: str, key: str) -> int | None:
    """1-based line of ``key:`` / ``key =`` / ``"key":`` in a config file's text."""
    pat = re.compile(r'^\s*-?\s*["\']?' + re.escape(key) + r'["\']?\s*[:=]', re.MULTILINE)
    m = pat.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def unwrap_wandb(data: dict[str, Any], lines: dict[tuple[str, ...], int]
                 ) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """W&B ``config.yaml``: ``key: {desc: ..., value: V}`` → ``key: V`` (``_wandb`` dropped).

    Applied only when every top-level value has that shape, so a user key called
    ``value`` is never unwrapped by accident.
    """
    items = {k: v for k, v in data.items() if k not in ("_wandb", "wandb_version")}
    if not items or not all(isinstance(v, dict) and "value" in v and set(v) <= {"desc", "value"}
                            for v in items.values()):
        return data, lines
    out = {k: v["value"] for k, v in items.items()}
    new_lines: dict[tuple[str, ...], int] = {}
    for path, line in lines.items():
        if path[0] not in out:
            continue
        if len(path) >= 2 and path[1] == "value":
            new_lines[(path[0], *path[2:])] = line
        elif len(path) == 1:
            new_lines.setdefault(path, line)
    # the value's own line is the better anchor than the key's
    return out, new_lines


def flatten(data: dict[str, Any],
            prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """``[(key path, leaf value), ...]`` in document order (non-empty dicts descended)."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.extend(flatten(value, path))
        else:
            out.append((path, value))
    return out
