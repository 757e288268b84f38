"""The rewrite stage: put GhostBatchNorm wherever a model trains a BatchNorm.

``rewrite(model, ghost_batch_size)`` never touches its input (it works on a deep copy) and
returns a :class:`SurgeryResult` holding the converted model and one row per BatchNorm-like
thing it saw, converted or not, and why.

Two routes (DESIGN.md, stage "rewrite"):

* **swap** (the default output): BatchNorm modules are replaced in place inside the user's own
  class, so ``isinstance``, methods and the forward stay the user's. Plain BatchNorm1d/2d/3d and
  SyncBatchNorm become :class:`GhostBatchNorm`; BatchNorm subclasses with behaviour of their own
  (timm's ``BatchNormAct2d`` applies drop + activation) get a dynamic subclass
  (:mod:`lbconvert.nn.ghost_variants`) that runs their own forward once per ghost batch, so the
  extras are kept; uninitialized lazy BatchNorm becomes :class:`LazyGhostBatchNorm` (it
  materializes on the first forward, like LazyBatchNorm).
* **fx**: the model is traced with torch.fx (BatchNorm modules are leaves) to find
  ``F.batch_norm`` calls in the forward, which module swapping cannot reach. Only when there are
  such calls does the result become the traced ``GraphModule``, with those calls replaced by a
  parameter-free GhostBatchNorm call, so no state-dict key changes. When tracing fails
  (data-dependent control flow, ...), the swap route is used and the reason recorded; when the
  pass fails its pre- or post-condition (:class:`FunctionalBatchNormPass`), the rewritten graph
  is discarded, the swap route is used, and route and notes say which condition failed.

TorchScript blocks (``torch.jit.ScriptModule`` subclasses, ``torch.jit.script(...)`` output)
holding a BatchNorm are first rebuilt as the eager modules they were scripted from
(:mod:`lbconvert.rewrite.scripted`), so their BatchNorms are swapped like any other; a block
that cannot be rebuilt keeps its BatchNorms, each listed as left alone with the reason.

Left alone: FrozenBatchNorm2d and other frozen or custom BatchNorm-like classes that are not a
torch ``_BatchNorm`` (no batch statistics of torch's kind), modules matched by ``skip`` globs
(fnmatch on the qualified name or any of its parents), SyncBatchNorm with ``keep_syncbn``,
``F.batch_norm`` calls in a model torch.fx cannot trace (listed with file:line).
SyncBatchNorm converted to GhostBatchNorm gives up cross-device statistics on purpose: ghost
batches are per device.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.infra.pass_base import PassBase, PassResult
from torch.nn.modules.batchnorm import _BatchNorm, _LazyNormBase, _NormBase

from lbconvert._text import clip
from lbconvert.errors import LbconvertError
from lbconvert.nn.ghost_batchnorm import GhostBatchNorm, LazyGhostBatchNorm, ghost_batch_norm
from lbconvert.nn.ghost_variants import GhostChunkedMixin, ghost_class_for
from lbconvert.plan.devices import SMALL_GHOST_BATCH
from lbconvert.rewrite.scripted import is_scripted, replace_scripted_blocks
from lbconvert.rewrite.source_calls import functional_calls

__all__ = ["SurgeryRow", "SurgeryResult", "rewrite", "GhostFunctional", "FunctionalBatchNormPass",
           "ghost_class_for", "clone_module"]

_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FUNCTIONAL_BN = (F.batch_norm, torch.batch_norm)
_META = "lbconvert"


@dataclass
class SurgeryRow:
    """One BatchNorm-like site: what it was, what it became and by which route."""

    path: str
    old_type: str
    new_type: str
    ghost_batch_size: int | None
    route: str  # 'swap' | 'fx' | 'skipped' | 'left'
    reason: str = ""
    kind: str = "module"  # 'module' | 'functional' (an F.batch_norm call site)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@dataclass
class SurgeryResult:
    """What ``rewrite`` did: the converted model plus the table the report prints."""

    model: nn.Module
    rows: list[SurgeryRow] = field(default_factory=list)
    route: str = "swap"
    fx_error: str | None = None
    ghost_batch_size: int = SMALL_GHOST_BATCH
    notes: list[str] = field(default_factory=list)

    @property
    def converted(self) -> int:
        """Number of sites now computing ghost-batch statistics."""
        return sum(r.route in ("swap", "fx") for r in self.rows)

    @property
    def skipped(self) -> int:
        """Number of sites the user excluded with ``skip``."""
        return sum(r.route == "skipped" for r in self.rows)

    @property
    def left_alone(self) -> int:
        """Number of sites left as they were by rule (FrozenBatchNorm2d, kept SyncBatchNorm...)."""
        return sum(r.route == "left" for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the model itself is described by its class name only)."""
        return {
            "model_class": type(self.model).__name__,
            "route": self.route,
            "fx_error": self.fx_error,
            "ghost_batch_size": self.ghost_batch_size,
            "converted": self.converted,
            "skipped": self.skipped,
            "left_alone": self.left_alone,
            "sites": len(self.rows),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- the fx pass

class GhostFunctional(nn.Module):
    """Stands in for an ``F.batch_norm`` call in a traced graph; has no parameters or buffers.

    The training flag follows this module's mode (``model.eval()`` switches it), the buffers and
    affine tensors stay wherever the user's code keeps them, so no state-dict key changes.
    """

    def __init__(self, ghost_batch_size: int, momentum: float | None, eps: float):
        super().__init__()
        self.ghost_batch_size = ghost_batch_size
        self.momentum = momentum
        self.eps = eps

    def forward(self, input, running_mean=None, running_var=None, weight=None, bias=None):
        """Ghost BatchNorm on the given tensors (Hoffer et al. 2017, Algorithm 1)."""
        training = self.training
        track = running_mean is not None
        if training and track and self.momentum is None:
            raise LbconvertError(
                "F.batch_norm with momentum=None has no counter to average with",
                hint="pass a float momentum or use nn.BatchNorm")
        return ghost_batch_norm(input, running_mean, running_var, weight, bias, None, training,
                                track, self.momentum, self.eps, self.ghost_batch_size)

    def extra_repr(self) -> str:
        return f"ghost_batch_size={self.ghost_batch_size}, momentum={self.momentum}, eps={self.eps}"


class _LeafTracer(torch.fx.Tracer):
    """Keeps every normalization module (and GhostBatchNorm) a leaf: we convert it by swap."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (_NormBase, GhostFunctional)) or _is_bn_like(m) or is_scripted(
            m) or super().is_leaf_module(m, qualname)


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _bn_call_args(node: torch.fx.Node) -> dict[str, Any]:
    bound = dict(zip(_BN_ARGS, node.args))
    bound.update(node.kwargs)
    if node.target is torch.batch_norm:  # aten order: (..., training, momentum, eps, cudnn)
        bound.pop("cudnn_enabled", None)
    bound.setdefault("training", False)
    bound.setdefault("momentum", 0.1)
    bound.setdefault("eps", 1e-5)
    return bound


class FunctionalBatchNormPass(PassBase):
    """GraphModule → GraphModule: replace training ``F.batch_norm`` calls by GhostFunctional.

    ``requires``: the graph lints. ``call``: annotates every BatchNorm-like node with
    ``node.meta["lbconvert"]`` (kind, path) and swaps functional calls. ``ensures``: no training
    ``F.batch_norm`` call is left outside a skip glob and the graph still lints.
    """

    def __init__(self, ghost_batch_size: int, skip: Sequence[str] = ()):
        super().__init__()
        self.ghost_batch_size = ghost_batch_size
        self.skip = tuple(skip)
        self.rows: list[SurgeryRow] = []
        self.called_modules: set[str] = set()

    def requires(self, graph_module: torch.fx.GraphModule) -> None:
        """The input graph must be well formed."""
        graph_module.graph.lint()

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        """Annotate BatchNorm sites and replace functional training calls."""
        modified = False
        modules = dict(graph_module.named_modules())
        counter = 0
        for node in list(graph_module.graph.nodes):
            if node.op == "call_module" and isinstance(modules.get(node.target), _NormBase):
                self.called_modules.add(node.target)
                node.meta[_META] = {"kind": "module", "path": node.target}
                continue
            if node.op != "call_function" or node.target not in _FUNCTIONAL_BN:
                continue
            args = _bn_call_args(node)
            path = _site_path(node, args)
            node.meta[_META] = {"kind": "functional", "path": path}
            training = args["training"]
            if _skipped(path, self.skip):
                self.rows.append(SurgeryRow(path, "F.batch_norm", "F.batch_norm", None, "skipped",
                                            "matched --skip", "functional"))
                continue
            if training is False:
                self.rows.append(SurgeryRow(path, "F.batch_norm", "F.batch_norm", None, "left",
                                            "called with training=False (inference only)",
                                            "functional"))
                continue
            if not _depends_on_input(args["input"]):
                # e.g. timm's ScaledStdConv2d standardizes its weight with F.batch_norm: that
                # normalizes a parameter, not a batch of samples — nothing ghost about it.
                node.meta[_META]["left"] = True
                self.rows.append(SurgeryRow(path, "F.batch_norm", "F.batch_norm", None, "left",
                                            "normalizes a parameter (weight standardization), "
                                            "not a batch of samples", "functional"))
                continue
            name = f"ghost_bn_fn_{counter}"
            counter += 1
            graph_module.add_submodule(name, GhostFunctional(
                self.ghost_batch_size, args["momentum"], args["eps"]))
            with graph_module.graph.inserting_before(node):
                new = graph_module.graph.call_module(name, (
                    args["input"], args.get("running_mean"), args.get("running_var"),
                    args.get("weight"), args.get("bias")))
            new.meta.update(node.meta)
            new.meta[_META] = {"kind": "functional", "path": path, "replaced": True}
            node.replace_all_uses_with(new)
            graph_module.graph.erase_node(node)
            modified = True
            self.rows.append(SurgeryRow(
                path, "F.batch_norm", "GhostFunctional", self.ghost_batch_size, "fx",
                "functional call in forward; training flag now follows model.train()/eval()",
                "functional"))
        if modified:
            graph_module.recompile()
        return PassResult(graph_module, modified)

    def ensures(self, graph_module: torch.fx.GraphModule) -> None:
        """No unconverted training functional BatchNorm remains outside the skip globs."""
        graph_module.graph.lint()
        for node in graph_module.graph.nodes:
            if node.op == "call_function" and node.target in _FUNCTIONAL_BN:
                args = _bn_call_args(node)
                meta = node.meta.get(_META, {})
                if args["training"] is not False and not meta.get("left") and not _skipped(
                        meta.get("path", ""), self.skip):
                    raise RuntimeError(
                        f"{type(self).__name__}: F.batch_norm at {node.name} was not converted")


def _depends_on_input(node: Any) -> bool:
    """Whether an fx value is computed from the model's inputs (a placeholder), rather than
    from parameters and constants only."""
    if not isinstance(node, torch.fx.Node):
        return False
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current.op == "placeholder":
            return True
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return False


def _site_path(node: torch.fx.Node, args: dict[str, Any]) -> str:
    """Name a functional call by the module owning its tensors: ``layer1.F.batch_norm[bn_1]``."""
    tag = f"F.batch_norm[{node.name}]"
    for key in ("running_mean", "weight"):
        arg = args.get(key)
        if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and "." in arg.target:
            return f"{arg.target.rsplit('.', 1)[0]}.{tag}"
    return tag


def _skipped(path: str, skip: Sequence[str]) -> bool:
    parts = path.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(p, g) for g in skip for p in prefixes)


# --------------------------------------------------------------------------- module swap

# BatchNorm-like class names the surgery recognizes besides torch's _BatchNorm subclasses:
# torchvision's FrozenBatchNorm2d, timm's BatchNormAct2d / FrozenBatchNormAct2d, custom ones.
_BN_SUFFIXES = ("BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "BatchNormAct",
                "BatchNormAct1d", "BatchNormAct2d", "BatchNormAct3d")


def _type_name(m: Any) -> str:
    if is_scripted(m):
        return f"{getattr(m, 'original_name', type(m).__name__)} (TorchScript)"
    return type(m).__name__


def _named_bn(name: str) -> bool:
    return any(name.lower().endswith(s.lower()) for s in _BN_SUFFIXES)


def _is_bn_like(m: nn.Module) -> bool:
    if is_scripted(m):
        return _named_bn(getattr(m, "original_name", "") or "")
    return isinstance(m, _BatchNorm) or any(_named_bn(c.__name__) for c in type(m).__mro__)


def _replacement(m: nn.Module, ghost: int, keep_syncbn: bool) -> tuple[nn.Module | None, str, str]:
    """(new module or None, route, reason) for one BatchNorm-like module."""
    if isinstance(m, GhostBatchNorm):
        return None, "left", "already GhostBatchNorm"
    if is_scripted(m):
        return None, "left", "TorchScript module: not convertible"
    if not isinstance(m, _BatchNorm):
        if "frozen" in type(m).__name__.lower():
            return None, "left", f"{type(m).__name__} has fixed statistics (frozen)"
        return None, "left", ("BatchNorm-like class not derived from torch's _BatchNorm: its "
                              "statistics are its own code, which lbconvert does not rewrite")
    if isinstance(m, nn.SyncBatchNorm):
        if keep_syncbn:
            return None, "left", "kept SyncBatchNorm (--keep-syncbn)"
        return (GhostBatchNorm.from_batchnorm(m, ghost), "swap",
                "SyncBatchNorm: cross-device statistics given up on purpose (ghost batches are "
                "per device)")
    if isinstance(m, _LazyNormBase):
        if m.has_uninitialized_params():
            new = LazyGhostBatchNorm(ghost, m.eps, m.momentum, m.affine, m.track_running_stats)
            new.train(m.training)
            return new, "swap", "lazy: materializes as GhostBatchNorm on first forward"
        return GhostBatchNorm.from_batchnorm(m, ghost), "swap", ""
    if type(m) in _PLAIN:
        return GhostBatchNorm.from_batchnorm(m, ghost), "swap", ""
    # A subclass with behaviour of its own: keep the object (hooks, extra submodules) and
    # give it a class that computes per-ghost statistics around its own forward.
    new_cls = ghost_class_for(type(m))
    m.__class__ = new_cls
    m.ghost_batch_size = ghost
    m.strategy = "auto"
    how = "own forward run per ghost batch" if issubclass(new_cls, GhostChunkedMixin) else (
        "subclass kept")
    return m, "swap", f"BatchNorm subclass: {how}"


def _swap_modules(root: nn.Module, ghost: int, skip: Sequence[str], keep_syncbn: bool,
                  called: set[str] | None) -> list[SurgeryRow]:
    rows: list[SurgeryRow] = []
    done: dict[int, nn.Module] = {}
    for path, m in list(root.named_modules(remove_duplicate=False)):
        if not path or not _is_bn_like(m):
            continue
        old = _type_name(m)
        if _skipped(path, skip):
            rows.append(SurgeryRow(path, old, old, None, "skipped", "matched --skip"))
            continue
        if id(m) in done:
            new, route, reason = done[id(m)], "swap", "shared module (same object)"
        else:
            new, route, reason = _replacement(m, ghost, keep_syncbn)
            if new is not None:
                done[id(m)] = new
        if new is None:
            rows.append(SurgeryRow(path, old, old, None, route, reason))
            continue
        if new is not m:
            parent_path, _, name = path.rpartition(".")
            setattr(root.get_submodule(parent_path), name, new)
        if called is not None and path not in called:
            reason = "; ".join(x for x in (reason, "not called in the traced forward") if x)
        rows.append(SurgeryRow(path, old, _type_name(new), ghost, route, reason))
    return rows


def _under(path: str, block: str) -> bool:
    return block == "" or path == block or path.startswith(block + ".")


def _mark_scripted(rows: list[SurgeryRow], converted: dict[str, str],
                   refused: dict[str, str]) -> None:
    """Say on each row inside a TorchScript block what happened to the block."""
    for row in rows:
        for block, name in converted.items():
            if _under(row.path, block):
                where = f"`{block}`" if block else "the model root"
                row.old_type = f"{row.old_type} (TorchScript)"
                row.reason = "; ".join(x for x in (
                    f"inside TorchScript block {where} ({name}), rebuilt as an eager module",
                    row.reason) if x)
        for block, why in refused.items():
            if _under(row.path, block) and row.route == "left":
                row.reason = f"inside TorchScript block `{block}`: {why}"


def _untraced_functional_rows(work: nn.Module, skip: Sequence[str], why: str) -> list[SurgeryRow]:
    """Rows for the F.batch_norm calls in the source, when no fx graph can replace them."""
    rows = []
    for call in functional_calls(work, _is_bn_like):
        path = f"{call.path}.F.batch_norm" if call.path else "F.batch_norm"
        path = f"{path}[{call.cls}:{call.line}]"
        if _skipped(path, skip):
            rows.append(SurgeryRow(path, "F.batch_norm", "F.batch_norm", None, "skipped",
                                   "matched --skip", "functional"))
            continue
        rows.append(SurgeryRow(path, "F.batch_norm", "F.batch_norm", None, "left",
                               f"call at {call.file}:{call.line} not converted: {why}; module "
                               "swapping cannot reach a functional call", "functional"))
    return rows


def _dropped_rows(work: nn.Module, graph_module: torch.fx.GraphModule) -> list[SurgeryRow]:
    """BatchNorm modules the traced forward never called: torch.fx leaves them out of the
    GraphModule, so they are not in the output model."""
    kept = {p for p, _ in graph_module.named_modules(remove_duplicate=False)}
    return [SurgeryRow(p, _type_name(m), "-", None, "left",
                       "not called in the traced training forward, so not part of the "
                       "torch.fx GraphModule output")
            for p, m in work.named_modules(remove_duplicate=False)
            if p and p not in kept and _is_bn_like(m)]


# --------------------------------------------------------------------------- the stage

def clone_module(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also copes with uninitialized lazy parameters and buffers."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if isinstance(t, nn.parameter.UninitializedTensorMixin):
            memo[id(t)] = type(t)(requires_grad=t.requires_grad, device=t.device, dtype=t.dtype)
    return copy.deepcopy(model, memo)


#: What each step of the fx pass checks or does, as the failure message names it.
_PASS_STEP = {"requires": "its pre-condition", "call": "while rewriting the graph",
              "ensures": "its post-condition"}


def _one_line(exc: BaseException) -> str:
    return clip(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 300)


def _fx_functional_nodes(graph: torch.fx.Graph) -> list[str]:
    return [n.name for n in graph.nodes
            if n.op == "call_function" and n.target in _FUNCTIONAL_BN]


def rewrite(model: nn.Module, ghost_batch_size: int, *, skip: Sequence[str] = (),
            keep_syncbn: bool = False) -> SurgeryResult:
    """Replace every training BatchNorm in a copy of ``model`` by GhostBatchNorm.

    Ghost Batch Normalization: Hoffer et al. 2017, Algorithm 1. See the module docstring for
    the routes; the result's rows list every BatchNorm-like site, including those left alone.

    Args:
        model: the model; never modified (the surgery works on a deep copy).
        ghost_batch_size: samples per ghost batch (Hoffer et al. use 128; Masters & Luschi
            2018 find ≈ 8 best).
        skip: glob patterns of qualified module names to leave alone.
        keep_syncbn: leave ``SyncBatchNorm`` as it is (cross-device statistics kept).

    Returns:
        A :class:`SurgeryResult`: the converted ``model`` (same state-dict keys), the route
        used (module swap or torch.fx), and one row per site with what was done and why.

    Raises:
        LbconvertError: ``model`` is not an ``nn.Module`` or the ghost size is not ≥ 1.
    """
    if not isinstance(model, nn.Module):
        raise LbconvertError(f"rewrite needs a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(ghost_batch_size, int) or ghost_batch_size < 1:
        raise LbconvertError(f"ghost batch size {ghost_batch_size!r} is invalid",
                             hint="pass --ghost-batch N with N ≥ 1")
    work, scripted, refused = replace_scripted_blocks(
        model, clone_module(model),
        lambda p, m: _is_bn_like(m) and not _skipped(p, skip))
    notes: list[str] = []
    if scripted:
        notes.append(f"{len(scripted)} TorchScript block(s) rebuilt as eager modules so their "
                     "BatchNorms could be converted (" + ", ".join(
                         f"{p or 'root'}: {n}" for p, n in list(scripted.items())[:4])
                     + (", …" if len(scripted) > 4 else "") + "); the converted model runs "
                     "them in Python")
    fx_error: str | None = None
    failure = ""  # "" | "trace" | "pass"
    graph_module: torch.fx.GraphModule | None = None
    fx_pass = FunctionalBatchNormPass(ghost_batch_size, skip)
    was_training = work.training
    try:
        work.train()  # trace the training paths (aux heads, train-only branches)
        graph = _LeafTracer().trace(work)
        graph_module = torch.fx.GraphModule(work, graph, type(work).__name__)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "use the fallback"
        fx_error, failure = _one_line(exc), "trace"
    finally:
        work.train(was_training)
    functional_nodes = _fx_functional_nodes(graph_module.graph) if graph_module else []
    if graph_module is not None:
        step = "requires"
        try:
            fx_pass.requires(graph_module)
            step = "call"
            fx_pass.call(graph_module)
            step = "ensures"
            fx_pass.ensures(graph_module)
        except Exception as exc:  # noqa: BLE001 - a failed pass is reported, then swap
            fx_error = (f"fx rewrite failed {_PASS_STEP[step]}: {_one_line(exc)} "
                        f"({type(fx_pass).__name__}.{step})")
            failure, graph_module = "pass", None
    functional = [r for r in fx_pass.rows if r.route == "fx"] if graph_module is not None else []
    extra_rows: list[SurgeryRow] = []
    if functional:
        graph_module.train(work.training)
        target, route = graph_module, "fx"
        notes.append("output is a torch.fx GraphModule: the forward calls F.batch_norm directly")
        extra_rows = _dropped_rows(work, graph_module)
    elif failure == "pass":
        # The rewritten graph is discarded whole: a graph that broke its contract is not shipped.
        target, route = work, f"swap ({fx_error})"
        calls = len(functional_nodes)
        notes.append(f"{fx_error}; fell back to module swapping: BatchNorm modules were swapped, "
                     f"the {calls} F.batch_norm call(s) of the traced forward were not converted "
                     "(listed as left alone) and still normalize over the whole batch in "
                     "training")
        extra_rows = [SurgeryRow(f"F.batch_norm[{name}]", "F.batch_norm", "F.batch_norm", None,
                                 "left", f"not converted, fell back to module swapping: "
                                 f"{fx_error}", "functional") for name in functional_nodes]
    elif failure == "trace":
        target, route = work, f"swap (fx trace failed: {fx_error})"
        notes.append("torch.fx could not trace the model, so F.batch_norm calls inside forward "
                     "cannot be replaced (each found in the source is listed as left alone); "
                     "BatchNorm modules were swapped")
        extra_rows = _untraced_functional_rows(work, skip, f"torch.fx could not trace the "
                                               f"model ({fx_error})")
    else:
        target, route = work, "swap"
    called = fx_pass.called_modules if graph_module is not None else None
    rows = _swap_modules(target, ghost_batch_size, skip, keep_syncbn, called)
    rows.extend(fx_pass.rows if graph_module is not None else [])
    rows.extend(extra_rows)
    _mark_scripted(rows, scripted, refused)
    if refused:
        notes.append(f"{len(refused)} TorchScript block(s) kept as they are, their BatchNorms "
                     "left alone: " + "; ".join(f"{p or 'root'}: {why}"
                                                for p, why in refused.items()))
    if any(r.old_type == "SyncBatchNorm" and r.route == "swap" for r in rows):
        notes.append("SyncBatchNorm converted: ghost batches are per device, no cross-device "
                     "statistics (use keep_syncbn to keep it)")
    return SurgeryResult(target, rows, route, fx_error, ghost_batch_size, notes)
