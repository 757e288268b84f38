"""Model loading: turn a model spec (and optional weights) into an ``nn.Module``.

Specs, as a user types them:

- ``path/to/model.py`` — a factory named ``build_model`` / ``create_model`` /
  ``get_model`` / ``model`` (or an ``nn.Module`` instance named ``model``), else the one
  model the file defines (see :func:`lbconvert.model.candidates.model_candidates`: helper
  blocks that other code in the file builds on are not models); several → an error listing
  them;
  ``path/to/model.py:name`` picks an attribute.
- ``folder:attr`` — a package folder in (or relative to) the current directory, e.g.
  ``models:ResNet18`` from a repository root; the attribute is looked up in the package,
  then in its modules.
- ``package.module:attr`` — an importable factory, class or instance; the current directory
  is on the import path, as with ``python -m``, pytest and uvicorn.
- ``torchvision:<name>`` — ``torchvision.models.get_model(name, weights=None)``; no download.
- ``timm:<name>`` — ``timm.create_model(name, pretrained=False)``.

``torchvision:`` and ``timm:`` need the ``vision`` and ``timm`` extras (:mod:`lbconvert.extras`).

``model_kwargs`` (the CLI's ``--model-kwargs key=value ...``, timm's convention) are passed to
the factory or class, e.g. ``VGG(vgg_name="VGG16")``.

Every problem a user can cause raises :class:`~lbconvert.errors.LbconvertError` naming the
spec and the fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert._text import first_line
from lbconvert.errors import LbconvertError
from lbconvert.extras import EXTRA_OF, install_hint, require
from lbconvert.model.candidates import FACTORY_NAMES, choose_candidate, required_args

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn



@dataclass
class LoadedModel:
    """A loaded model and how it was found (printed and written to the report)."""

    module: nn.Module
    spec: str
    name: str
    source: str  # file | module | torchvision | timm | object
    factory: str | None = None
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, when the source knows it
    notes: list[str] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)  # --model-kwargs passed to the factory

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (without the module)."""
        return {
            "spec": self.spec,
            "name": self.name,
            "source": self.source,
            "factory": self.factory,
            "weights": self.weights,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "notes": list(self.notes),
            "kwargs": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                       for k, v in self.kwargs.items()},
        }


def load_model(spec: str, *, weights: str | Path | None = None,
               num_classes: int | None = None,
               model_kwargs: dict[str, Any] | None = None) -> LoadedModel:
    """Build the model a spec names; load ``weights`` (a state dict) when given.

    ``num_classes`` is passed to factories that accept it (e.g. from the training config),
    so a CIFAR config gets a 10-class head without editing the user's file.
    ``model_kwargs`` are passed to the factory (a key it does not accept is an error).
    """
    import torch.nn as nn

    kwargs = dict(model_kwargs or {})
    if spec.startswith("torchvision:"):
        loaded = _load_torchvision(spec, num_classes, kwargs)
    elif spec.startswith("timm:"):
        loaded = _load_timm(spec, num_classes, kwargs)
    else:
        path_part, _, attr = _split_spec(spec)
        if Path(path_part).is_dir() and not path_part.endswith(".py"):
            module = _import_package_dir(spec, Path(path_part))
            if not attr:
                raise LbconvertError(
                    f"model spec {spec!r} is a folder: name the model in it",
                    hint=f"e.g. {path_part}:<ModelName> or {path_part}/<file>.py",
                )
            module = _module_with(spec, module, attr)
            loaded = _from_module(spec, module, attr, num_classes, source="package",
                                  name=attr, kwargs=kwargs)
        elif path_part.endswith(".py") or Path(path_part).exists():
            module = _import_file(spec, Path(path_part))
            loaded = _from_module(spec, module, attr or None, num_classes, source="file",
                                  name=Path(path_part).stem, kwargs=kwargs)
        elif attr:
            module = _import_module(spec, path_part)
            loaded = _from_module(spec, module, attr, num_classes, source="module",
                                  name=attr, kwargs=kwargs)
        else:
            raise LbconvertError(
                f"model spec {spec!r} names nothing lbconvert can load",
                hint="use path/to/model.py[:factory], package.module:factory, "
                "torchvision:<name> or timm:<name>",
            )
    if not isinstance(loaded.module, nn.Module):
        raise LbconvertError(
            f"model spec {spec!r} gave a {type(loaded.module).__name__}, not a torch.nn.Module",
            hint="point the spec at a factory or class that returns an nn.Module",
        )
    if weights is not None:
        load_weights(loaded.module, weights)
        loaded.weights = str(weights)
    return loaded


def _split_spec(spec: str) -> tuple[str, str, str]:
    # Windows drive letters are not a concern here; "a.py:fn" and "pkg.mod:attr" split once.
    head, sep, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    return head, sep, attr


def _import_failed(spec: str, exc: BaseException) -> LbconvertError:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        line = tb.tb_lineno
        tb = tb.tb_next
    where = f" (line {line})" if line else ""
    missing = (exc.name or "").split(".")[0] if isinstance(exc, ImportError) else ""
    hint = "fix the file, or run with --debug to see the traceback"
    if missing in EXTRA_OF:
        hint = f"the model needs {missing}: {install_hint(missing)}"
    return LbconvertError(
        f"importing the model {spec!r} raised {type(exc).__name__}: {exc}{where}", hint=hint)


@contextmanager
def _on_path(folder: str):
    """``folder`` first on ``sys.path`` for the duration (as ``python -m`` puts the cwd)."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _import_module(spec: str, name: str) -> Any:
    """Import ``name`` with the current directory on the import path."""
    with _on_path(str(Path.cwd())):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise LbconvertError(
                f"model spec {spec!r}: cannot import module {name!r} from the current "
                f"directory {str(Path.cwd())!r} or the installed packages ({exc})",
                hint="run from the repository root, install the package, or give a "
                "path/to/model.py",
            ) from None
        except Exception as exc:  # user code raising on import
            raise _import_failed(spec, exc) from exc


def _import_package_dir(spec: str, folder: Path) -> Any:
    """Import a folder (``models``) as a package from its parent directory."""
    folder = folder.resolve()
    if not folder.name.isidentifier():
        raise LbconvertError(f"model spec {spec!r}: folder {folder.name!r} is not a Python "
                             "package name", hint="give path/to/file.py:<name> instead")
    with _on_path(str(folder.parent)):
        try:
            return importlib.import_module(folder.name)
        except Exception as exc:  # user code raising on import
            raise _import_failed(spec, exc) from exc


def _module_with(spec: str, package: Any, attr: str) -> Any:
    """The package if it has ``attr``, else the one module file in its folder defining it."""
    if hasattr(package, attr):
        return package
    folder = Path(package.__file__).parent if getattr(package, "__file__", None) else \
        Path(next(iter(package.__path__)))
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.stem == "__init__" or f"{attr}" not in path.read_text(errors="replace"):
            continue
        with _on_path(str(folder.parent)):
            try:
                module = importlib.import_module(f"{package.__name__}.{path.stem}")
            except Exception as exc:  # user code raising on import
                raise _import_failed(spec, exc) from exc
        if hasattr(module, attr):
            found.append(module)
    if len(found) == 1:
        return found[0]
    names = ", ".join(m.__name__ for m in found)
    raise LbconvertError(
        f"model spec {spec!r}: {attr!r} is " + (f"defined in several modules ({names})" if found
                                                else f"not in package {package.__name__!r}"),
        hint=f"name the module: {package.__name__}.<module>:{attr}",
    )


def _import_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise LbconvertError(f"model file {str(path)!r} does not exist",
                             hint="check the path (relative to the current directory)")
    mod_name = "lbconvert_user_" + re.sub(r"\W", "_", str(path.resolve()))
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise LbconvertError(f"model file {str(path)!r} cannot be imported as Python",
                             hint="give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    # The file may import its siblings (models/blocks.py) or its package (from models.x
    # import y, run from the repository root): make its folder and the cwd importable.
    sys.modules[mod_name] = module
    try:
        with _on_path(str(Path.cwd())), _on_path(str(path.resolve().parent)):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise _import_failed(spec, exc) from exc
    return module


def _from_module(spec: str, module: Any, attr: str | None, num_classes: int | None, *,
                 source: str, name: str, kwargs: dict[str, Any]) -> LoadedModel:
    import torch.nn as nn

    notes: list[str] = []
    if attr:
        if not hasattr(module, attr):
            available = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
            raise LbconvertError(
                f"model spec {spec!r}: {attr!r} not found in {getattr(module, '__name__', '?')}",
                hint=f"choose one of {', '.join(available)}",
            )
        target, factory = getattr(module, attr), attr
    else:
        target = factory = None
        for cand in FACTORY_NAMES:
            obj = getattr(module, cand, None)
            if obj is not None and (callable(obj) or isinstance(obj, nn.Module)):
                target, factory = obj, cand
                break
        if target is None:
            target, factory, why = choose_candidate(spec, module, kwargs)
            notes.append(why)
    module_obj = _call_factory(spec, target, factory, num_classes, kwargs)
    if factory:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        notes.insert(0, f"built by {factory}({args})")
    return LoadedModel(module=module_obj, spec=spec, name=factory if source != "file" or
                       factory not in FACTORY_NAMES else name, source=source,
                       factory=factory, notes=notes, kwargs=kwargs)


def _call_factory(spec: str, target: Any, factory: str | None, num_classes: int | None,
                  model_kwargs: dict[str, Any]) -> Any:
    import torch.nn as nn

    if isinstance(target, nn.Module):
        if model_kwargs:
            raise LbconvertError(f"model spec {spec!r}: {factory!r} is a module instance, so "
                                 "--model-kwargs cannot be passed to it",
                                 hint="point the spec at its class or factory")
        return target
    if not callable(target):
        raise LbconvertError(f"model spec {spec!r}: {factory!r} is not callable",
                             hint="point it at a factory function, class or module instance")
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        sig = None
    kwargs: dict[str, Any] = dict(model_kwargs)
    if sig is not None:
        params = sig.parameters
        open_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if k not in params] if not open_kw else []
        if unknown:
            raise LbconvertError(
                f"--model-kwargs {', '.join(unknown)}: {factory}() takes no such argument",
                hint=f"{factory}{sig}",
            )
        required = [a for a in required_args(target) if a not in kwargs]
        if required:
            raise LbconvertError(
                f"model spec {spec!r}: {factory}() needs arguments ({', '.join(required)})",
                hint="pass them with --model-kwargs " + " ".join(f"{a}=..." for a in required),
            )
        if num_classes is not None and "num_classes" in params and "num_classes" not in kwargs:
            kwargs["num_classes"] = num_classes
    try:
        return target(**kwargs)
    except Exception as exc:
        raise LbconvertError(
            f"model spec {spec!r}: {factory}() raised {type(exc).__name__}: {exc}",
            hint=_factory_hint(exc, sig, kwargs),
        ) from exc


def _factory_hint(exc: Exception, sig: inspect.Signature | None,
                  kwargs: dict[str, Any]) -> str:
    """The fix for a factory that raised: its arguments by --model-kwargs when it takes
    ``**kwargs`` (lbconvert cannot see which it needs) or a missing one is named."""
    open_kw = sig is not None and any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) and open_kw:
        return (f"pass it with --model-kwargs {exc.args[0]}=... (the factory takes **kwargs), "
                "or run with --debug for the traceback")
    if open_kw or (isinstance(exc, TypeError) and "argument" in str(exc)):
        given = f" (given: {', '.join(kwargs)})" if kwargs else ""
        return ("pass the factory's arguments with --model-kwargs key=value ..." + given
                + ", fix the factory, or run with --debug for the traceback")
    return "fix the factory, or run with --debug for the traceback"


def _load_torchvision(spec: str, num_classes: int | None,
                      model_kwargs: dict[str, Any]) -> LoadedModel:
    torchvision = require("torchvision", f"model spec {spec!r}")
    name = spec.split(":", 1)[1]
    available = torchvision.models.list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        raise LbconvertError(
            f"torchvision has no model {name!r}",
            hint=f"did you mean {', '.join(close)}?" if close
            else "see torchvision.models.list_models()",
        )
    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if name in ("googlenet", "inception_v3"):
        # Their default init uses scipy's truncnorm over every weight: slow and pointless here.
        kwargs["init_weights"] = False
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)) \
            .parameters:
        # Detection/segmentation builders default to an ImageNet backbone: no download.
        kwargs["weights_backbone"] = None
    kwargs.update(model_kwargs)
    try:
        model = torchvision.models.get_model(name, **kwargs)
    except TypeError as exc:
        raise LbconvertError(f"torchvision {name}: {exc}",
                             hint="check --model-kwargs against the builder's arguments") from None
    shape = (3, 299, 299) if name == "inception_v3" else None
    if shape is None and not any(k in name for k in ("raft", "rcnn", "retinanet", "ssd",
                                                     "fcos", "keypoint", "deeplab", "fcn",
                                                     "lraspp", "r3d", "mc3", "r2plus1d",
                                                     "s3d", "mvit", "swin3d")):
        shape = (3, 224, 224)
    return LoadedModel(module=model, spec=spec, name=name, source="torchvision",
                       factory=f"torchvision.models.get_model({name!r}, weights=None)",
                       input_shape=shape, kwargs=dict(model_kwargs))


def _load_timm(spec: str, num_classes: int | None, model_kwargs: dict[str, Any]) -> LoadedModel:
    timm = require("timm", f"model spec {spec!r}")
    name = spec.split(":", 1)[1]
    kwargs: dict[str, Any] = {"pretrained": False}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    kwargs.update(model_kwargs)
    try:
        model = timm.create_model(name, **kwargs)
    except TypeError as exc:
        raise LbconvertError(f"timm {name}: {exc}",
                             hint="check --model-kwargs against the model's arguments") from None
    except RuntimeError as exc:
        raise LbconvertError(f"timm cannot build {name!r}: {exc}",
                             hint="see timm.list_models()") from None
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    shape = tuple(cfg["input_size"]) if "input_size" in cfg else None
    return LoadedModel(module=model, spec=spec, name=name, source="timm",
                       factory=f"timm.create_model({name!r}, pretrained=False)",
                       input_shape=shape, kwargs=dict(model_kwargs))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict into ``model`` with ``torch.load(weights_only=True)``, strictly.

    Accepts a bare state dict, ``{"state_dict": ...}`` (Lightning ``.ckpt``),
    ``{"model": ...}`` / ``{"model_state_dict": ...}``, and strips a common key prefix
    (Lightning's ``model.``, DDP's ``module.``) when that makes the keys match.
    Pickled Python objects are refused: unpickling runs arbitrary code.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise LbconvertError(f"weights file {str(path)!r} does not exist", hint="check --weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc, 200)
        raise LbconvertError(
            f"weights file {str(path)!r} holds pickled Python objects, which lbconvert will "
            f"not unpickle (it can run arbitrary code): {first}",
            hint="re-save it with torch.save(model.state_dict(), path)",
        ) from None
    except Exception as exc:
        raise LbconvertError(f"weights file {str(path)!r} cannot be read: {exc}",
                             hint="give a file written by torch.save") from None
    state = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LbconvertError(f"weights file {str(path)!r} is not a state dict",
                             hint="save model.state_dict() (a dict of tensors)")
    wanted = set(model.state_dict())
    state = _strip_prefix(state, wanted)
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    if missing or unexpected:
        raise LbconvertError(
            f"weights file {str(path)!r} does not match the model: missing "
            f"{missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected "
            f"{unexpected[:4]}{'...' if len(unexpected) > 4 else ''}",
            hint="check that --weights belongs to this model spec",
        )
    model.load_state_dict(state, strict=True)


def _strip_prefix(state: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    if set(state) & wanted:
        return state
    for prefix in ("model.", "module.", "net.", "_orig_mod."):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped and set(stripped) & wanted:
            return stripped
    return state
