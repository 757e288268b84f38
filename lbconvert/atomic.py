"""Atomic file writes: write a temporary file beside the target, then rename over it.

DESIGN.md: "outputs are written atomically (temp file + rename)". A crash or an exception in
the middle of a write leaves either the old file or nothing — never a truncated file that a
later run (or a CI job reading ``report.json``) would take for a finished one. The temporary
file lives in the target's own directory so the final ``os.replace`` stays on one file system
(where POSIX guarantees the rename is atomic).

No torch import here: every stage, including the torch-free ``plan``, writes through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lbconvert.errors import LbconvertError


def _default_mode() -> int:
    # Read the umask once, at import, when no other thread can be changing it.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_MODE = _default_mode()

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable"]


def check_writable(path: Path | str, *, force: bool = False) -> Path:
    """Refuse to replace an existing ``path`` unless ``force``; return it as a ``Path``.

    Raises ``LbconvertError`` naming the file and ``--force``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise LbconvertError(
            f"{path} already exists", hint="pass --force to replace it, or choose another --out"
        )
    if path.is_dir():
        raise LbconvertError(f"{path} is a directory", hint="choose another --out")
    return path


@contextlib.contextmanager
def atomic_path(path: Path | str, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    For writers that want a file name rather than bytes (``torch.save``, ONNX export,
    ``safetensors.torch.save_file``, ``matplotlib.savefig``). If the body raises, the
    temporary file is removed and ``path`` is untouched. With ``force=False`` an existing
    ``path`` is refused before anything is written. The temporary name keeps the target's
    suffix, because some writers choose the format from it.
    """
    path = check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"writer produced no file at {tmp} (for {path})")
        _fsync(tmp)
        # mkstemp creates 0600; give the result the mode a plain open() would have given.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else _DEFAULT_MODE)
        os.replace(tmp, path)
    finally:
        # After a successful replace the temporary name no longer exists.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes, *, force: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; return the path.

    ``force=False`` refuses to replace an existing file (``LbconvertError``).
    """
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(
    path: Path | str, text: str, *, encoding: str = "utf-8", force: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, ``\\n`` newlines); return the path."""
    return atomic_write_bytes(path, text.encode(encoding), force=force)


def _fsync(path: Path) -> None:
    # Flush file contents before the rename, so a power loss cannot leave the new name
    # pointing at an empty file.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
