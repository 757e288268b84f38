"""Weights & Biases run folders: ``wandb/offline-run-*`` and synced ``wandb/run-*``.

A W&B run folder holds ``run-<id>.wandb``, the run's transaction log: W&B's LevelDB-style
record log (a 7-byte ``:W&B`` header, 32 KiB blocks, each record framed by a CRC-32,
a length and a FULL/FIRST/MIDDLE/LAST type) of ``Record`` protobuf messages. Offline runs
have nothing else (``files/config.yaml`` and ``files/wandb-summary.json`` are written when a
run is synced); the messages are decoded with the ``wandb`` package's own protobuf classes
(``wandb.proto.wandb_internal_pb2``), so the optional extra ``lbconvert[wandb]`` is needed.

What a step is: a history row's ``_step`` is W&B's row counter, one per ``wandb.log`` call
unless the script passes ``step=``. It is taken as the update index; when the rows carry
the trainer's own counter (``trainer/global_step`` from Lightning's WandbLogger,
``train/global_step`` from HF's WandbCallback, or ``global_step``), that counter is used.
Where the batch size lives: the run's config (``wandb.init(config=...)``, in the ``run``
record and ``files/config.yaml``), else the configs around the run (a Hydra job's
``.hydra/config.yaml``).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from lbconvert.audit.history import RunHistory
from lbconvert.errors import LbconvertError

NAME = "wandb"
LOOKED_FOR = "a W&B run folder (wandb/offline-run-* or wandb/run-* with run-*.wandb)"

_HEADER = b":W&B"
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_COUNTERS = ("trainer/global_step", "train/global_step", "global_step")
_SKIP = ("_step", "_runtime", "_timestamp")


def run_folders(path: Path) -> list[Path]:
    """The W&B run folders ``path`` is or holds (``path/wandb/*run-*``), oldest first."""
    if any(path.glob("run-*.wandb")):
        return [path]
    base = path / "wandb"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()
                  and p.name.startswith(("run-", "offline-run-")) and any(p.glob("run-*.wandb")))


def detect(run_dir: Path) -> bool:
    """True when ``run_dir`` is a W&B run folder or holds ``wandb/*run-*`` folders."""
    return bool(run_folders(run_dir))


def records(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(offset, payload)`` of every intact record of a ``.wandb`` log, in order.

    Raises LbconvertError for a file that is not a W&B log; a damaged record (bad CRC,
    cut short) ends the scan — what came before is kept, as for TensorBoard files.
    """
    data = path.read_bytes()
    if len(data) < 7 or data[:4] != _HEADER:
        raise LbconvertError(f"{path} is not a W&B transaction log (no ':W&B' header)",
                             hint="pass the run folder W&B wrote (wandb/offline-run-*)")
    pos, pending = 7, None
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + 7:pos + 7 + length]
        if kind == 0 and length == 0:
            break  # pre-allocated tail
        if len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            raise _Damaged(pos)
        start, pos = pos, pos + 7 + length
        if kind == _FULL:
            yield start, body
        elif kind == _FIRST:
            pending = (start, bytearray(body))
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending[1].extend(body)
            if kind == _LAST:
                yield pending[0], bytes(pending[1])
                pending = None


class _Damaged(Exception):
    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def _pb():
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise LbconvertError("reading a W&B run needs the wandb package",
                             hint="pip install 'lbconvert[wandb]'") from exc
    return wandb_internal_pb2


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read(run_dir: Path) -> RunHistory:
    """Read the run's history rows and config from its ``run-*.wandb`` log."""
    folders = run_folders(run_dir)
    folder = folders[-1]
    history = RunHistory(path=str(run_dir), format=NAME)
    if len(folders) > 1:
        history.notes.append(f"{run_dir} holds {len(folders)} W&B runs: read the latest, "
                             f"{folder.name} (audit the wandb/ folder to see each)")
    log = sorted(folder.glob("run-*.wandb"))[-1]
    pb = _pb()
    rows: list[tuple[float, dict[str, float]]] = []
    config: dict[str, Any] = {}
    name = ""
    try:
        for _, payload in records(log):
            rec = pb.Record()
            rec.ParseFromString(payload)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {}
                for item in rec.history.item:
                    v = _value(item.value_json)
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        row[_key(item)] = float(v)
                step = row.get("_step", float(rec.history.step.num))
                rows.append((step, row))
            elif kind == "run":
                name = rec.run.display_name or name
                for item in rec.run.config.update:
                    config[_key(item)] = _value(item.value_json)
            elif kind == "config":
                for item in rec.config.update:
                    config[_key(item)] = _value(item.value_json)
    except _Damaged as exc:
        history.notes.append(f"{log.name}: damaged record at byte {exc.offset}; the "
                             f"{len(rows)} history rows before it are read")
    history.notes.append(f"W&B run {folder.name}" + (f" ({name!r})" if name else "") +
                         f": {len(rows)} history rows from {log.name}")
    return _fill(history, rows, config, f"W&B config ({log.name})")


def _fill(history: RunHistory, rows: list[tuple[float, dict[str, float]]],
          config: dict[str, Any], label: str) -> RunHistory:
    """History rows (``(_step, {key: value})``) and the run's config into ``history``."""
    counter = next((c for c in _COUNTERS if any(c in r for _, r in rows)), None)
    history.step_note = (f"W&B history: the logged {counter!r} = optimizer updates" if counter
                         else "W&B history _step (one per wandb.log call unless step= is "
                              "passed): taken as updates")
    for step, row in rows:
        at = row.get(counter, math.nan) if counter else step
        if not math.isfinite(at):
            continue
        for key, value in row.items():
            if key in _SKIP or key.startswith("_wandb") or key == counter:
                continue
            history.add_scalar(key, at, value)
    user = {k: v for k, v in config.items() if not k.startswith("_wandb")}
    if user:
        from lbconvert.audit.read.common import apply_config, config_document

        apply_config(history, config_document(user, label))
    return history.finalize()


URI = "wandb://"


def is_uri(path: str | Path) -> bool:
    """True for ``wandb://entity/project/run_id`` (also as a Path collapses it: ``wandb:/``)."""
    return str(path).startswith("wandb:/")


def read_uri(uri: str | Path) -> RunHistory:
    """Read ``wandb://entity/project/run_id`` through ``wandb.Api()`` (the user's credentials:
    ``wandb login`` or ``WANDB_API_KEY``): the run's full history (``scan_history``, every
    row, not the sampled ``history()``) and its config. Same step semantics as a folder."""
    text = str(uri)
    parts = [p for p in text.split(":", 1)[1].split("/") if p]
    if len(parts) != 3:
        raise LbconvertError(f"{text!r} is not a W&B run address",
                             hint="use wandb://ENTITY/PROJECT/RUN_ID")
    try:
        import wandb
    except ImportError as exc:
        raise LbconvertError(f"reading {text} needs the wandb package",
                             hint="pip install 'lbconvert[wandb]'") from exc
    address = "/".join(parts)
    try:
        run = wandb.Api().run(address)
        rows = []
        for row in run.scan_history():
            nums = {k: float(v) for k, v in row.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if "_step" in nums:
                rows.append((nums["_step"], nums))
        config = dict(run.config)
    except LbconvertError:
        raise
    except Exception as exc:  # no credentials, no such run, no network: one line
        first = (str(exc).splitlines() or [""])[0][:200]
        raise LbconvertError(f"cannot read {URI}{address} through the W&B API "
                             f"({type(exc).__name__}: {first})",
                             hint="check the address, and log in (wandb login or "
                                  "WANDB_API_KEY); or audit the run folder") from exc
    history = RunHistory(path=f"{URI}{address}", format=NAME)
    history.notes.append(f"W&B run {address} ({getattr(run, 'name', '') or parts[2]!r}): "
                         f"{len(rows)} history rows through wandb.Api()")
    return _fill(history, rows, config, f"W&B config ({URI}{address})")
