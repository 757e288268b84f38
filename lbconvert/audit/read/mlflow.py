"""MLflow's local stores, read with the standard library only.

* sqlite store (``mlflow.db``, the default of recent MLflow): tables ``metrics(key, value,
  step, run_uuid, is_nan)``, ``params(key, value, run_uuid)``, ``runs(run_uuid,
  start_time, lifecycle_stage)``.
* file store (``mlruns/<experiment>/<run>/``): ``metrics/<key>`` lines
  ``timestamp value step``, ``params/<key>`` holding the value, ``meta.yaml``.

Run discovery (:mod:`lbconvert.audit.read.discover`) gives each run of a store its own
audit (``run_id``); read without one, a store's most recently started active run is read
(said in the notes). MLflow steps are
whatever the user passed to ``log_metric(step=...)``: taken as optimizer updates.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config, config_document, find_files

NAME = "mlflow"
LOOKED_FOR = "mlflow.db (MLflow sqlite store) or mlruns/<experiment>/<run>/metrics (file store)"


def _db(run_dir: Path) -> Path | None:
    p = run_dir / "mlflow.db"
    return p if p.is_file() else None


def _file_runs(run_dir: Path) -> list[Path]:
    if (run_dir / "metrics").is_dir() and (run_dir / "meta.yaml").is_file():
        return [run_dir]
    return [p.parent for p in find_files(run_dir, "meta.yaml", 3)
            if (p.parent / "metrics").is_dir() and ".trash" not in p.parts]


def detect(run_dir: Path) -> bool:
    """True when an MLflow sqlite database or file-store run is present."""
    return _db(run_dir) is not None or bool(_file_runs(run_dir))


def read(run_dir: Path, *, run_id: str | None = None, db: Path | None = None) -> RunHistory:
    """Read the MLflow run ``run_id`` (else the latest) under ``run_dir`` (or in the sqlite
    file ``db``): metrics and params."""
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = "MLflow steps are the log_metric(step=...) values: taken as updates"
    db = db or _db(run_dir)
    params: dict[str, str] = {}
    if db is not None:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            runs = con.execute("SELECT run_uuid, name FROM runs WHERE lifecycle_stage='active' "
                               "ORDER BY start_time DESC").fetchall()
            if run_id is not None:
                runs = [r for r in runs if r[0] == run_id]
            if not runs:
                return history.finalize()
            run_id, name = runs[0]
            if len(runs) > 1:
                history.notes.append(f"{db.name} holds {len(runs)} runs: read the latest, "
                                     f"{name} ({run_id})")
            for key, value, step, is_nan in con.execute(
                    "SELECT key, value, step, is_nan FROM metrics WHERE run_uuid=? "
                    "ORDER BY step, timestamp", (run_id,)):
                history.add_scalar(key, float(step), float("nan") if is_nan else float(value))
            params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid=?",
                                      (run_id,)).fetchall())
        finally:
            con.close()
        label = f"MLflow params ({db.name}, run {name})"
        history.name = name
    else:
        runs = sorted(_file_runs(run_dir), key=_start_time, reverse=True)
        run = runs[0]
        if len(runs) > 1:
            history.notes.append(f"{len(runs)} MLflow runs found: read the latest, {run.name}")
        for mf in sorted((run / "metrics").rglob("*")):
            if not mf.is_file():
                continue
            key = mf.relative_to(run / "metrics").as_posix()
            for line in mf.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    history.add_scalar(key, float(parts[2]), float(parts[1]))
        pdir = run / "params"
        if pdir.is_dir():
            params = {p.relative_to(pdir).as_posix(): p.read_text().strip()
                      for p in pdir.rglob("*") if p.is_file()}
        label = f"MLflow params ({run.name}/params)"
    apply_config(history, config_document({k: _number(v) for k, v in params.items()}, label))
    return history.finalize()


def _start_time(run: Path) -> int:
    m = re.search(r"^start_time:\s*(\d+)", (run / "meta.yaml").read_text(), re.MULTILINE)
    return int(m.group(1)) if m else 0


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
