"""Run discovery: which runs a folder holds (as TensorBoard sees runs), and their configs.

A folder with its own event files, Lightning ``metrics.csv``, timm ``summary.csv``, HF
``trainer_state.json`` (also in ``checkpoint-*/``), MLflow file-store run, Ray Tune trial
(``params.json`` + ``progress.csv``/``result.json``) or W&B run (``run-*.wandb``, or a
``wandb/`` folder holding one run: a Hydra job folder ``multirun/DATE/TIME/N/``) is one run; a
parent folder holds as many runs as it has such folders below it (Lightning's
``lightning_logs/version_N``, a folder of SummaryWriter runs), and each is audited on its
own. An MLflow ``mlflow.db`` holds one run per row of its ``runs`` table. Parts of one run
are not runs of their own: HF's ``runs/<date>/`` and ``checkpoint-N/``, Lightning's
``checkpoints/``, the ``<timestamp>/`` folder ``SummaryWriter.add_hparams`` writes, Keras-style
``train/`` + ``validation/`` (or ``eval/``) writers. A folder of checkpoints alone is a run
(weight distance).

Config discovery: the config files beside the run or in a folder above it (up to the folder
the user passed): ``hparams.yaml``, ``config.yaml|yml|json|toml``, ``args.yaml``,
``.hydra/config.yaml``, W&B's ``files/config.yaml``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lbconvert.errors import LbconvertError

MAX_DEPTH = 6
CONFIG_NAMES = ("hparams.yaml", "config.yaml", "config.yml", "config.json", "config.toml",
                "args.yaml", "args.json", ".hydra/config.yaml", "files/config.yaml")
_CKPT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
_TIMESTAMP = re.compile(r"\d{9,}\.\d+")  # SummaryWriter.add_hparams: str(time.time())
_WRITER_PARTS = {"train", "validation", "val", "eval", "test", "valid"}


@dataclass(frozen=True)
class RunRef:
    """One run to audit: its folder, its name in the audited folder, an MLflow run id."""

    path: Path
    name: str
    root: Path
    mlflow_run: str | None = None
    store: Path | None = None  # the MLflow sqlite file, when the user named the file

    def key(self) -> tuple[str, str | None]:
        """What identifies the run: its resolved folder (or store) and MLflow run id.
        Hashable, so a sweep's runs are de-duplicated with a set (one ``resolve()`` per
        run, not per pair)."""
        where = self.store if self.store is not None and self.store.name != "mlflow.db" \
            else self.path
        return str(where.resolve()), self.mlflow_run

    def same_run(self, other: RunRef) -> bool:
        """True when both refer to the same run (same folder, same MLflow run)."""
        return self.key() == other.key()


def _own_events(d: Path) -> bool:
    return any(p.is_file() for p in d.glob("events.out.tfevents.*"))


def _is_hf(d: Path) -> bool:
    return (d / "trainer_state.json").is_file() or \
        any(d.glob("checkpoint-*/trainer_state.json"))


def _is_lightning_csv(d: Path) -> bool:
    p = d / "metrics.csv"
    if not p.is_file():
        return False
    try:
        with p.open(encoding="utf-8", errors="replace") as fh:
            return "step" in fh.readline().strip().split(",")
    except OSError:
        return False


def _is_timm(d: Path) -> bool:
    p = d / "summary.csv"
    if not p.is_file():
        return False
    try:
        with p.open(encoding="utf-8", errors="replace") as fh:
            return "epoch" in fh.readline().strip().split(",")
    except OSError:
        return False


def _wandb_runs(d: Path) -> int:
    """How many W&B run folders ``d`` is (1) or holds in ``d/wandb/``."""
    if any(d.glob("run-*.wandb")):
        return 1
    w = d / "wandb"
    if not w.is_dir():
        return 0
    return sum(1 for c in w.iterdir() if c.is_dir() and not c.is_symlink()
               and c.name.startswith(("run-", "offline-run-")))


def _is_raytune(d: Path) -> bool:
    return (d / "params.json").is_file() and \
        ((d / "progress.csv").is_file() or (d / "result.json").is_file())


def _is_mlflow_file_run(d: Path) -> bool:
    return (d / "metrics").is_dir() and (d / "meta.yaml").is_file()


def _checkpoints(d: Path) -> int:
    n = sum(1 for p in d.iterdir() if p.is_file() and p.suffix in _CKPT_SUFFIXES)
    sub = d / "checkpoints"
    if sub.is_dir():
        n += sum(1 for p in sub.iterdir() if p.is_file() and p.suffix in _CKPT_SUFFIXES)
    return n


def _writer_parts(d: Path) -> bool:
    """Keras-style: no events here, but train/ and validation/ writers below."""
    kids = [c for c in d.iterdir() if c.is_dir() and _own_events(c)]
    return len(kids) >= 1 and all(c.name.lower() in _WRITER_PARTS for c in kids) and \
        not _own_events(d)


def _children(d: Path) -> list[Path]:
    try:
        return sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")
                      and c.name not in ("__pycache__", "checkpoints", "latest-run"))
    except OSError:
        return []


def mlflow_runs(db: Path) -> list[tuple[str, str]]:
    """``(run_id, run_name)`` of every active run in an MLflow sqlite store, oldest first."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT run_uuid, name FROM runs WHERE lifecycle_stage='active' "
                               "ORDER BY start_time, run_uuid").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise LbconvertError(f"cannot read MLflow database {db} ({exc})",
                             hint="pass an intact mlflow.db, or the run's folder") from exc
    return [(str(r[0]), str(r[1] or r[0])) for r in rows]


def _walk(d: Path, root: Path, depth: int, out: list[RunRef]) -> None:
    rel = d.relative_to(root).as_posix()
    name = root.name if rel == "." else rel
    if (d / "mlflow.db").is_file():
        for run_id, run_name in mlflow_runs(d / "mlflow.db"):
            out.append(RunRef(d, f"{name}/{run_name}" if rel != "." else run_name, root,
                              run_id))
    wandb = _wandb_runs(d)
    if _is_hf(d) or _is_lightning_csv(d) or _is_timm(d) or _is_mlflow_file_run(d) or \
            _own_events(d) or _writer_parts(d) or _is_raytune(d) or wandb == 1:
        out.append(RunRef(d, name, root))
        if _is_hf(d) or _writer_parts(d) or _is_mlflow_file_run(d) or _is_raytune(d) or \
                wandb == 1:
            return  # runs/<date>/, checkpoint-N/, train/ + validation/ are parts of it
        for c in _children(d):
            if _TIMESTAMP.fullmatch(c.name) or c.name.lower() in _WRITER_PARTS:
                continue  # add_hparams' folder, an eval/ writer: parts of this run
            if depth < MAX_DEPTH:
                _walk(c, root, depth + 1, out)
        return
    before = len(out)
    if depth < MAX_DEPTH:
        for c in _children(d):
            _walk(c, root, depth + 1, out)
    if len(out) == before and not (d / "mlflow.db").is_file() and _checkpoints(d) >= 2:
        out.append(RunRef(d, name, root))


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def not_a_run_folder(path: Path) -> LbconvertError:
    """The error for a run path that is not a folder: a file (``mlflow.db``,
    ``trainer_state.json``, an event file) names the folder to pass instead."""
    if path.is_file():
        parent = path.parent.as_posix() or "."
        return LbconvertError(f"{path} is a file, not a run folder",
                              hint=f"pass the folder that holds it, {parent} (a folder with "
                                   "several runs audits each; --run, --run-name select one)")
    return LbconvertError(f"run directory {path} does not exist or is not a directory",
                          hint="pass the folder the training run wrote (logs, checkpoints)")


def find_runs(root: str | Path, *, run: str | None = None, run_id: str | None = None,
              run_name: str | None = None, run_flag: str = "--run") -> list[RunRef]:
    """Every run under ``root`` (``root`` itself when it is one), filtered by the flags.

    ``run`` matches a run's name (its path relative to ``root``, or its last part, or a
    glob); ``run_id`` / ``run_name`` select MLflow runs. Raises LbconvertError naming the
    flag (``run_flag`` for ``run``: ``--baseline-run`` for a baseline) and listing the runs
    when a filter matches nothing.
    """
    root = Path(root)
    out: list[RunRef] = []
    if root.is_file() and _is_sqlite(root):
        # an mlflow.db named as a file: every run of it, as for its folder
        out = [RunRef(root.parent, run_name, root.parent, run_id, root)
               for run_id, run_name in mlflow_runs(root)]
    elif not root.is_dir():
        raise not_a_run_folder(root)
    else:
        _walk(root, root, 0, out)
    for flag, value, match in (
            (run_flag, run, lambda r, v: r.name == v or r.name.rsplit("/", 1)[-1] == v
             or fnmatch.fnmatch(r.name, v)),
            ("--run-id", run_id, lambda r, v: r.mlflow_run == v),
            ("--run-name", run_name, lambda r, v: r.mlflow_run is not None
             and r.name.rsplit("/", 1)[-1] == v)):
        if value is None or not out:
            continue
        kept = [r for r in out if match(r, value)]
        if not kept:
            names = ", ".join(r.name + (f" ({r.mlflow_run})" if r.mlflow_run else "")
                              for r in out)
            raise LbconvertError(f"{flag} {value!r} matches no run in {root} (runs: {names})",
                                 hint=f"pass one of the names listed to {flag}")
        out = kept
    return out


def _names(folder: Path) -> set[str] | None:
    try:
        return set(os.listdir(folder))
    except OSError:
        return None  # unlistable: probe by name


def config_files(run_dir: Path, root: Path) -> list[Path]:
    """Config files beside the run, in its event-file folders, or above it up to ``root``.

    The run's folder is listed once; folders above it are probed by name (listing a
    sweep's root for each of its thousands of runs would make the audit quadratic).
    """
    run_dir, root = run_dir.resolve(), root.resolve()
    here = _names(run_dir)
    folders = [(run_dir, here)]
    events = sorted({p.parent for p in run_dir.glob("*/events.out.tfevents.*")} - {run_dir}) \
        if here is None or any((run_dir / n).is_dir() for n in here) else []
    folders += [(f, _names(f)) for f in events]
    up = run_dir
    while up != root and root in up.parents:
        up = up.parent
        folders.append((up, None))
    wandb = sorted(run_dir.glob("wandb/*/files/config.yaml")) \
        if here is None or "wandb" in here else []
    found: list[Path] = []
    for folder, names in folders:
        for name in CONFIG_NAMES:
            if names is not None and name.split("/", 1)[0] not in names:
                continue
            p = folder / name
            if p.is_file() and p not in found:
                found.append(p)
    if len(wandb) == 1:
        found.append(wandb[0])
    return found
