"""Optional dependencies: which extra of lbconvert installs each, and the error when one is missing.

``pip install lbconvert`` installs only what every command needs, and never replaces the user's
torch. Features that need more (``torchvision:`` model specs, ``timm:`` specs, ``--data
torchvision:FakeData``, ``--safetensors``, ONNX parity, report plots) import their package
here, inside the function that needs it, so that a missing package is one line naming the
extra, not an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from lbconvert.errors import LbconvertError

#: Import name → the extra of lbconvert that installs it (pyproject.toml's optional-dependencies).
EXTRA_OF = {
    "torchvision": "vision",
    "timm": "timm",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnx",
    "matplotlib": "report",
    "tensorboard": "tensorboard",
    "safetensors": "safetensors",
    "wandb": "wandb",
}

#: Extras whose packages pin one torch release each (timm needs torchvision): installing them
#: unpinned may replace the user's torch, so the hint pins the installed one.
_PIN_TORCH = ("torchvision", "timm")


def install_hint(module: str) -> str:
    """``pip install 'lbconvert[extra]'`` for ``module``; for torchvision and timm, with the
    installed torch pinned (each torchvision release requires one exact torch release)."""
    top = module.split(".")[0]
    hint = f"pip install 'lbconvert[{EXTRA_OF.get(top, 'all')}]'"
    if top in _PIN_TORCH:
        torch_version = _installed_version("torch")
        if torch_version:
            hint += f" 'torch=={torch_version}' (the pin keeps your torch {torch_version})"
    return hint


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (no torch start-up cost)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[name] = None
        return False


def require(module: str, feature: str) -> ModuleType:
    """Import optional ``module`` for ``feature`` (e.g. ``"model spec 'torchvision:resnet18'"``).

    Raises :class:`LbconvertError` (one line naming the extra) when it is not installed, or
    when it is installed but cannot be imported (a torchvision built for another torch).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if not is_installed(module.split(".")[0]) or missing == module.split(".")[0]:
            raise LbconvertError(f"{feature} needs {module.split('.')[0]}, which is not "
                                 "installed", hint=install_hint(module)) from None
        raise _broken(module, feature, exc) from None
    except Exception as exc:  # noqa: BLE001 - e.g. torchvision's RuntimeError on a torch mismatch
        raise _broken(module, feature, exc) from None


def check_installed(module: str, feature: str) -> None:
    """Fail early (before a model is loaded) when ``feature`` will need ``module``."""
    if not is_installed(module):
        raise LbconvertError(f"{feature} needs {module}, which is not installed",
                             hint=install_hint(module))


def _broken(module: str, feature: str, exc: BaseException) -> LbconvertError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return LbconvertError(
        f"{feature} needs {module}, which is installed but fails to import "
        f"({type(exc).__name__}: {first})",
        hint=f"reinstall it to match your torch: {install_hint(module)}",
    )


def _installed_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
