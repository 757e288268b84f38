"""The verify stage: check that a rewritten model is the original with Ghost BatchNorm and no more.

``verify(original, converted, input_shape, ghost_batch_size=...)`` runs on copies (the models
passed in are never changed) and returns a :class:`Verification` with one :class:`Check` each:

* ``state_dict_keys``: the same keys with the same shapes;
* ``load_strict``: the converted state dict loads into a fresh copy of the original with
  ``strict=True``;
* ``eval_outputs``: eval-mode outputs equal (max abs difference ≤ ``atol``);
* ``train_ghost_equals_batch``: in training with the ghost size ≥ the batch, outputs, parameter
  gradients and buffers equal those of the original (GhostBatchNorm reduces to BatchNorm). When
  the model's training forward needs more than inputs (a detection model wants targets), the
  check is made per site instead, on the activations below;
* ``train_ghost_chunked``: in training with ghost < batch, every converted site, fed the input it
  receives inside the model, matches the ORIGINAL module applied ghost batch by ghost batch
  (Hoffer et al. 2017, Algorithm 1): outputs, input/weight/bias gradients and running
  statistics. Checking per site keeps the reference independent of what the rest of the model
  does across samples. The activations are captured by forward pre-hooks in an EVAL forward,
  which needs only inputs; sites that run only in training (auxiliary heads) are captured by a
  training forward when the model allows one;
* ``sites_accounted`` (when the surgery's account is given): every normalization site of the
  original, counted by :mod:`lbconvert.rewrite.census` (code that shares nothing with the
  surgery), is in the account as converted, skipped or left alone, and the account lists no
  site the count did not find. Module sites are compared by path, ``F.batch_norm`` call sites
  by number. The value is the number of sites missing from or extra in the account.

The check batch is small (CPU-friendly): by default ghost size 2 in the copies and a batch of 4,
so that there are two ghost batches. Differences in the chunked check are relative,
``max|a-b| / (1 + max|b|)``, because running variances of an untrained deep net can be large,
and measured in float64 (site modules and their captured inputs are upcast): the check is of
the ghost-batch semantics, not of float32 rounding, which a near-constant ghost batch of two
values amplifies by its invstd (an ulp of the mean becomes 1e-5 of the output). The float32
numerics of every strategy are tested against float64 BatchNorm in the test suite.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves

from lbconvert._text import clip
from lbconvert.errors import LbconvertError
from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
from lbconvert.rewrite.census import Census, count_sites
from lbconvert.rewrite.surgery import GhostFunctional, clone_module

__all__ = ["Check", "Verification", "verify"]

CHUNKED_RTOL = 1e-5
#: A ghost size no site's batch reaches: GhostBatchNorm is then BatchNorm at every site, also
#: where a site sees more rows than the model has samples (LeViT's BatchNorm1d over tokens).
WHOLE_BATCH = 1 << 30


@dataclass
class Check:
    """One verification check with its measured value and the threshold it was held to."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@dataclass
class Verification:
    """All checks of one verification run; ``passed`` when every check passed."""

    checks: list[Check] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    batch: int = 0
    ghost_batch_size: int = 0
    check_ghost_batch_size: int = 0
    sites: int = 0

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "passed": self.passed,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "ghost_batch_size": self.ghost_batch_size,
            "check_ghost_batch_size": self.check_ghost_batch_size,
            "sites": self.sites,
            "checks": [c.to_dict() for c in self.checks],
        }


def _ghost_sites(model: nn.Module) -> dict[str, nn.Module]:
    return {p: m for p, m in model.named_modules()
            if isinstance(m, (GhostBatchNorm, GhostFunctional))}


def _set_ghost(model: nn.Module, ghost: int) -> None:
    for m in _ghost_sites(model).values():
        m.ghost_batch_size = ghost


def _tensors(out: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


def _max_abs(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    if len(a) != len(b):
        return float("inf")
    # An empty tensor (a detector that found no boxes) equals an empty one of the same shape.
    diffs = [0.0] + [((x.detach().double() - y.detach().double()).abs().max().item()
                      if x.numel() else 0.0)
                     if x.shape == y.shape else float("inf") for x, y in zip(a, b)]
    return max(diffs)


def _rel(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None and b is None:
        return 0.0
    if a is None or b is None or a.shape != b.shape:
        return float("inf")
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 0:
        return 0.0
    return (a - b).abs().max().item() / (1.0 + b.abs().max().item())


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        if not isinstance(t, nn.parameter.UninitializedTensorMixin):
            return t.device
    return torch.device("cpu")


def _has_lazy(model: nn.Module) -> bool:
    return any(isinstance(t, nn.parameter.UninitializedTensorMixin)
               for t in [*model.parameters(), *model.buffers()])


def _run(name: str, fn, threshold: float | None) -> Check:
    try:
        value, detail = fn()
    except Exception as exc:  # noqa: BLE001 - a crash is a failed check, reported with its cause
        return Check(name, False, None, threshold, clip(f"{type(exc).__name__}: {exc}", 500))
    passed = value <= threshold if threshold is not None else value == 0
    return Check(name, passed, value, threshold, detail)


def verify(
    original: nn.Module,
    converted: nn.Module,
    input_shape: tuple[int, ...],
    *,
    ghost_batch_size: int,
    batch: int | None = None,
    atol: float = 1e-6,
    seed: int = 0,
    surgery: Any = None,
) -> Verification:
    """Check ``converted`` against ``original`` (see the module docstring for the checks).

    ``input_shape`` is per sample, e.g. ``(3, 32, 32)``. ``batch`` defaults to twice the
    check ghost size (2), giving two ghost batches; with a larger ``batch`` the real ghost size
    is used when the batch holds at least two ghost batches. ``surgery`` is the rewrite
    stage's result (anything with ``rows`` of ``path``, ``route`` and ``kind``): given, the
    ``sites_accounted`` check holds its account against an independent count.
    """
    if not input_shape or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise LbconvertError(f"input shape {tuple(input_shape)!r} is invalid",
                             hint="pass --input-shape C,H,W (per sample, without the batch)")
    if batch is None:
        ghost = min(ghost_batch_size, 2)
        batch = 2 * ghost
    else:
        ghost = ghost_batch_size if batch >= 2 * ghost_batch_size else max(1, batch // 2)
    lazy = _has_lazy(original) or _has_lazy(converted)
    if lazy:
        # Running a lazy module materializes it (changes its class): work on copies.
        original, converted = clone_module(original), clone_module(converted)
    device = _device(original)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape), generator=gen).to(device)
    if lazy:
        for model in (original, converted):
            mode = model.training
            with torch.no_grad():
                model.eval()(x)
            model.train(mode)
    result = Verification(input_shape=tuple(input_shape), batch=batch,
                          ghost_batch_size=ghost_batch_size, check_ghost_batch_size=ghost,
                          sites=len(_ghost_sites(converted)))
    result.checks.append(_run("state_dict_keys", lambda: _check_keys(original, converted), 0.0))
    result.checks.append(_run("load_strict", lambda: _check_load(original, converted), 0.0))
    result.checks.append(_run("eval_outputs", lambda: _check_eval(original, converted, x), atol))
    result.checks.append(_run("train_ghost_equals_batch",
                              lambda: _check_ghost_eq_batch(original, converted, x, seed), atol))
    result.checks.append(_run("train_ghost_chunked",
                              lambda: _check_chunked(original, converted, x, ghost, seed),
                              CHUNKED_RTOL))
    if surgery is not None:
        result.checks.append(_run("sites_accounted",
                                  lambda: account_check(count_sites(original), surgery.rows),
                                  0.0))
    return result


def account_check(found: Census, rows: Any) -> tuple[float, str]:
    """(sites missing from or extra in the account, detail) for the ``sites_accounted`` check.

    ``found = converted + skipped + left alone`` must hold site by site (DESIGN.md, "Nothing
    silent"): module sites by path (a shared module counts at each path), functional calls by
    number.
    """
    rows = list(rows)
    module_rows = [r.path for r in rows if getattr(r, "kind", "module") != "functional"]
    functional_rows = len(rows) - len(module_rows)
    missing = _multiset_minus(found.modules, module_rows)
    extra = _multiset_minus(module_rows, found.modules)
    fn_gap = abs(found.functional - functional_rows)
    by_route = {k: sum(r.route in v for r in rows) for k, v in (
        ("converted", ("swap", "fx")), ("skipped", ("skipped",)), ("left alone", ("left",)))}
    scripted = f", {len(found.scripted)} inside TorchScript modules" if found.scripted else ""
    head = (f"{found.total} site(s) found by an independent count ({len(found.modules)} "
            f"module(s){scripted}; {found.functional} F.batch_norm call(s) by "
            f"{found.functional_how})")
    account = " + ".join(f"{n} {k}" for k, n in by_route.items())
    bad = len(missing) + len(extra) + fn_gap
    if not bad:
        return 0.0, f"{head} = {account}"
    parts = []
    if missing:
        parts.append(f"not in the surgery's account: {', '.join(missing[:6])}"
                     + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""))
    if extra:
        parts.append(f"in the account but not found: {', '.join(extra[:6])}")
    if fn_gap:
        parts.append(f"F.batch_norm calls: {found.functional} found, {functional_rows} "
                     "in the account")
    return float(bad), f"{head} ≠ {account} ({len(rows)} listed): " + "; ".join(parts)


def _multiset_minus(a: Any, b: Any) -> list[str]:
    left = list(b)
    out = []
    for item in a:
        if item in left:
            left.remove(item)
        else:
            out.append(item)
    return out


def _check_keys(original: nn.Module, converted: nn.Module) -> tuple[float, str]:
    a = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in converted.state_dict().items()}
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    shape = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    bad = len(missing) + len(extra) + len(shape)
    detail = f"{len(a)} keys identical" if not bad else (
        f"missing {missing[:5]}, extra {extra[:5]}, shape differs {shape[:5]}")
    return float(bad), detail


def _check_load(original: nn.Module, converted: nn.Module) -> tuple[float, str]:
    fresh = clone_module(original)
    fresh.load_state_dict(converted.state_dict(), strict=True)
    return 0.0, f"loaded into a fresh {type(original).__name__} with strict=True"


@contextmanager
def _preserved(*models: nn.Module):
    """Run a model without leaving a trace: modes, buffers, ghost sizes restored on exit.

    Cheaper than deep-copying large models; gradients are taken with ``autograd.grad`` so no
    ``.grad`` is written either.
    """
    modes = [(m, m.training) for model in models for m in model.modules()]
    buffers = [(b, b.detach().clone()) for model in models for b in model.buffers()
               if not isinstance(b, nn.parameter.UninitializedTensorMixin)]
    ghosts = [(m, m.ghost_batch_size) for model in models for m in _ghost_sites(model).values()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, g in ghosts:
            m.ghost_batch_size = g


def _check_eval(original: nn.Module, converted: nn.Module, x: torch.Tensor) -> tuple[float, str]:
    with _preserved(original, converted), torch.no_grad():
        ya, yb = _tensors(original.eval()(x)), _tensors(converted.eval()(x))
    return _max_abs(ya, yb), f"max abs difference over {len(ya)} output tensor(s), batch {len(x)}"


def _grads(model: nn.Module, outputs: list[torch.Tensor], cot: list[torch.Tensor]):
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    loss = sum((t * c).sum() for t, c in zip(outputs, cot) if t.requires_grad)
    if not named or not isinstance(loss, torch.Tensor):
        return {}
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {k: g for (k, _), g in zip(named, grads) if g is not None}


def _check_ghost_eq_batch(original: nn.Module, converted: nn.Module, x: torch.Tensor,
                          seed: int) -> tuple[float, str]:
    try:
        return _whole_model_eq_batch(original, converted, x, seed)
    except Exception as exc:  # noqa: BLE001 - e.g. detection models need targets in training
        why = clip(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 160)
        if _trains_on_inputs(original, x, seed):
            raise  # the original trains on these inputs: the conversion broke it
    captured, how = _capture_sites(converted, x, WHOLE_BATCH, seed)
    worst, site = _per_site(original, captured, WHOLE_BATCH, seed)
    return worst, (f"per site ({len(captured)} of {len(_ghost_sites(converted))} site(s), "
                   f"activations from the {how}): the model's training forward raised {why}; "
                   f"worst relative difference at {site or '-'}")


def _trains_on_inputs(model: nn.Module, x: torch.Tensor, seed: int) -> bool:
    """Whether the model's training forward runs on inputs alone (no targets needed)."""
    with _preserved(model), torch.no_grad():
        try:
            model.train()
            torch.manual_seed(seed)
            model(x)
        except Exception:  # noqa: BLE001 - the answer is the signal
            return False
    return True


def _whole_model_eq_batch(original: nn.Module, converted: nn.Module, x: torch.Tensor,
                          seed: int) -> tuple[float, str]:
    with _preserved(original, converted):
        original.train()
        converted.train()
        _set_ghost(converted, WHOLE_BATCH)
        torch.manual_seed(seed)
        ya = _tensors(original(x))
        torch.manual_seed(seed)
        yb = _tensors(converted(x))
        out = _max_abs(ya, yb)
        gen = torch.Generator().manual_seed(seed + 1)
        cot = [torch.randn(t.shape, generator=gen).to(t) for t in ya]
        ga, gb = _grads(original, ya, cot), _grads(converted, yb, cot)
        grads = max([0.0] + [_max_abs([ga[k]], [gb[k]]) if k in gb else float("inf")
                             for k in ga])
        bufa, bufb = dict(original.named_buffers()), dict(converted.named_buffers())
        bufs = max([0.0] + [_max_abs([bufa[k].float()], [bufb[k].float()]) for k in bufa
                            if k in bufb])
    detail = f"outputs {out:.3g}, parameter grads {grads:.3g}, buffers {bufs:.3g} (max abs)"
    return max(out, grads, bufs), detail


def _capture_sites(converted: nn.Module, x: torch.Tensor, ghost: int,
                   seed: int) -> tuple[dict[str, tuple], str]:
    """Each site's module (a copy, as it was before running) and the arguments it received:
    from an eval forward (needs only inputs), then a training forward for sites that did not
    run in eval, when the model's training forward works without targets."""
    sites = _ghost_sites(converted)
    captured: dict[str, tuple] = {}

    def run(training: bool) -> None:
        handles = []
        for path, m in sites.items():
            def hook(mod, args, kwargs, path=path):
                if path not in captured:
                    captured[path] = (clone_module(mod), tuple(
                        a.detach().clone() if isinstance(a, torch.Tensor) else a
                        for a in (*args, *kwargs.values())))
            handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))
        with _preserved(converted):
            try:
                converted.train(training)
                _set_ghost(converted, ghost)
                torch.manual_seed(seed)
                with torch.no_grad():
                    converted(x)
            finally:
                for h in handles:
                    h.remove()

    run(False)
    how = "eval forward"
    if len(captured) < len(sites):
        try:
            run(True)
            how = "eval forward, train-only sites from a training forward"
        except Exception:  # noqa: BLE001 - the training forward is optional here
            how = "eval forward (sites that run only in training were not reached)"
    return captured, how


def _per_site(original: nn.Module, captured: dict[str, tuple], ghost: int,
              seed: int) -> tuple[float, str]:
    worst, worst_site = 0.0, ""
    for path, (before, args) in captured.items():
        if isinstance(before, GhostFunctional):
            diff = _site_functional(before, args, ghost, seed)
        else:
            diff = _site_module(_submodule(original, path), before, args[0], ghost, seed)
        if diff >= worst:
            worst, worst_site = diff, path
    return worst, worst_site


def _submodule(root: nn.Module, path: str) -> nn.Module:
    # getattr, not get_submodule: TorchScript modules do not support get_submodule.
    m = root
    for part in path.split(".") if path else ():
        m = getattr(m, part)
    return m


def _check_chunked(original: nn.Module, converted: nn.Module, x: torch.Tensor, ghost: int,
                   seed: int) -> tuple[float, str]:
    sites = _ghost_sites(converted)
    captured, how = _capture_sites(converted, x, ghost, seed)
    if not captured:
        return 0.0, "no GhostBatchNorm site ran (nothing to check)"
    worst, worst_site = _per_site(original, captured, ghost, seed)
    rows = sorted({int(args[0].shape[0]) for _, args in captured.values()
                   if isinstance(args[0], torch.Tensor) and args[0].dim() > 0} - {len(x)})
    folded = "" if not rows else (
        f"; sites whose batch axis holds {', '.join(map(str, rows[:3]))} rows for {len(x)} "
        "samples (tokens or positions folded into the batch, as LeViT's BatchNorm1d does) get "
        "ghost batches of rows, not of samples")
    return worst, (f"{len(captured)} of {len(sites)} site(s) checked against the original applied "
                   f"per ghost batch of {ghost} (batch {len(x)}, activations from the {how}); "
                   f"worst {worst_site or '-'}{folded}")


def _inputs_and_affine(m: nn.Module, x: torch.Tensor) -> list[torch.Tensor | None]:
    out: list[torch.Tensor | None] = [x]
    for name in ("weight", "bias"):
        t = getattr(m, name, None)
        out.append(t if isinstance(t, torch.Tensor) and t.requires_grad else None)
    return out


def _site_module(ref_mod: nn.Module, ghost_mod: nn.Module, x: torch.Tensor, ghost: int,
                 seed: int) -> float:
    with warnings.catch_warnings():
        # .double() of a TorchScript reference reads .grad of non-leaf wrappers: harmless.
        warnings.simplefilter("ignore", UserWarning)
        ref = clone_module(ref_mod).double().train()
    gbn = clone_module(ghost_mod).double().train()
    x = x.double()
    xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(seed)
    yr = torch.cat([ref(c) for c in xr.split(ghost)])
    torch.manual_seed(seed)
    yg = gbn(xg)
    cot = torch.randn(yr.shape, generator=torch.Generator().manual_seed(seed)).to(yr)
    diffs = [_rel(yg, yr)]
    # autograd.grad, not .grad: a TorchScript reference hands out a new wrapper per access.
    for (ar, ag) in zip(_inputs_and_affine(ref, xr), _inputs_and_affine(gbn, xg)):
        if ar is not None and ag is not None:
            gr = torch.autograd.grad((yr * cot).sum(), ar, retain_graph=True, allow_unused=True)
            gg = torch.autograd.grad((yg * cot).sum(), ag, retain_graph=True, allow_unused=True)
            diffs.append(_rel(gg[0], gr[0]))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        br, bg = getattr(ref, name, None), getattr(gbn, name, None)
        diffs.append(_rel(None if bg is None else bg.double(), None if br is None else br.double()))
    return max(diffs)


def _site_functional(fn: GhostFunctional, args: tuple, ghost: int, seed: int) -> float:
    x, rm, rv, w, b = (list(args) + [None] * 5)[:5]
    x = x.double()
    clone = lambda t: None if t is None else t.detach().double().clone()  # noqa: E731
    rm_r, rv_r, rm_g, rv_g = clone(rm), clone(rv), clone(rm), clone(rv)
    w_r, b_r, w_g, b_g = (None if t is None else t.detach().double().clone().requires_grad_()
                          for t in (w, b, w, b))
    xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr = torch.cat([F.batch_norm(c, rm_r, rv_r, w_r, b_r, True, fn.momentum, fn.eps)
                    for c in xr.split(ghost)])
    yg = clone_module(fn).train()(xg, rm_g, rv_g, w_g, b_g)
    cot = torch.randn(yr.shape, generator=torch.Generator().manual_seed(seed)).to(yr)
    (yr * cot).sum().backward()
    (yg * cot).sum().backward()
    diffs = [_rel(yg, yr), _rel(xg.grad, xr.grad), _rel(rm_g, rm_r), _rel(rv_g, rv_r)]
    if w_r is not None:
        diffs.append(_rel(w_g.grad, w_r.grad))
    if b_r is not None:
        diffs.append(_rel(b_g.grad, b_r.grad))
    return max(diffs)
