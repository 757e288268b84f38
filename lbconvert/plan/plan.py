"""Plan: the large-batch schedule for a target batch, as pure arithmetic (no torch).

Hoffer et al. 2017 (√M learning rate, regime adaptation: epochs × M, ghost batch 128),
Goyal et al. 2017 (linear rule, 5-epoch gradual warmup), You et al. 2017 (LARS, poly
power 2), Masters & Luschi 2018 (small BN batches).

Choices made here, and why:

- **Warmup.** Goyal et al. warm up for 5 epochs in a 90-epoch run (≈ 1/18 of training). The
  default warmup is the longer of the config's own warmup and those 5 epochs, times the
  regime's epoch factor: under ``budget`` it stays 5 epochs (Goyal's setting); under
  ``adapt`` the run is M× longer, so the warmup keeps the same share of training and the
  same number of updates as 5 epochs at the original length. The default is capped at a
  tenth of the new run (with a warning); an explicit ``--warmup`` is kept as given and
  only warned about. The ramp starts at the old LR (start factor lr_old/lr_new, Goyal's
  "start from η, reach kη") or from 0 when the LR does not grow.
- **Ghost batch.** 4, at most the original batch and the per-device micro-batch (Masters &
  Luschi 2018: BN over ≈ 2–8 samples generalizes best; in the fidelity benchmark the only
  size closing ≥ 90% of the gap on both pairs, docs/fidelity.md); an explicit ghost above 32
  gets a warning.
- **Devices.** ``target = devices × micro-batch × grad-accum`` exactly. With
  accumulation, micro-batches must be multiples of the ghost size so that GBN statistics
  are the same as without accumulation; otherwise the target is infeasible and the error
  names the nearest feasible targets.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lbconvert.errors import LbconvertError
from lbconvert.plan.devices import (
    plan_devices,
)
from lbconvert.plan.evidence import regime_alternatives_note
from lbconvert.plan.lengths import schedule_lengths
from lbconvert.plan.types import Change, Plan

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.config.read import TrainConfig

RULES = ("sqrt", "linear", "none")
REGIMES = ("adapt", "budget")
OPTIMIZERS = ("auto", "lars", "lamb", "keep")
GOYAL_WARMUP_EPOCHS = 5.0
LARS_TRUST_COEFFICIENT = 0.001
LARS_POLY_POWER = 2.0


def parse_regime(regime: str | float) -> float | None:
    """``"adapt"`` → None (means M), ``"budget"`` → 1.0, a positive number → itself."""
    if isinstance(regime, str) and regime.strip().lower() == "adapt":
        return None
    if isinstance(regime, str) and regime.strip().lower() == "budget":
        return 1.0
    try:
        factor = float(regime)
    except (TypeError, ValueError):
        factor = float("nan")
    if not math.isfinite(factor) or factor <= 0:
        raise LbconvertError(f"--regime {regime!r} is not adapt, budget or a positive number",
                             hint="use --regime adapt (Hoffer 2017), budget, or e.g. --regime 2")
    return factor


def lr_multiplier(rule: str, ratio: float) -> float:
    """LR factor for batch ratio M: √M (Hoffer et al. 2017), M (Goyal et al. 2017), or 1."""
    if rule == "sqrt":
        return math.sqrt(ratio)
    if rule == "linear":
        return ratio
    if rule == "none":
        return 1.0
    raise LbconvertError(f"--rule {rule!r} is not a known scaling rule",
                         hint="use --rule sqrt (Hoffer 2017), linear (Goyal 2017) or none")


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def make_plan(
    cfg: TrainConfig,
    target_batch: int,
    *,
    rule: str = "sqrt",
    regime: str | float = "adapt",
    warmup: str | float | None = None,
    ghost_batch: int | None = None,
    devices: int | None = None,
    max_per_device: int | None = None,
    optimizer: str = "auto",
) -> Plan:
    """Plan the large-batch run for ``target_batch`` from the small-batch ``cfg``.

    M = target / source. LR × √M (``sqrt``, Hoffer et al. 2017 eq. for matching the
    gradient covariance), × M (``linear``, Goyal et al. 2017) or × 1 (``none``). Epochs ×
    M under ``adapt`` (same number of updates, Hoffer et al. 2017 "regime adaptation"),
    × 1 under ``budget``, × a given factor otherwise; milestones and step intervals scale
    with the epochs. See the module docstring for warmup, ghost batch and device choices.
    ``optimizer``: ``auto`` picks by what the run uses (SGD or unknown → LARS, an Adam-family
    optimizer → LAMB), ``lars``/``lamb`` force one, ``keep`` keeps the config's optimizer
    (Adam-family: with the SDE scaling rule of Malladi et al. 2022 for β and ε).
    Raises LbconvertError for impossible requests.
    """
    rule = str(rule).strip().lower()
    mult_check = lr_multiplier(rule, 1.0)  # validates the rule before anything else
    del mult_check
    fixed_factor = parse_regime(regime)
    optimizer = str(optimizer).strip().lower()
    if optimizer not in OPTIMIZERS:
        raise LbconvertError(f"--optimizer {optimizer!r} is not known",
                             hint="use --optimizer auto, lars (You 2017), lamb (You 2020) or "
                                  "keep")
    where = f"config {cfg.path}" if cfg.path else "flags"
    if cfg.batch_size is None:
        looked = "batch_size, train_batch_size, per_device_train_batch_size, global_batch_size"
        raise LbconvertError(f"{where} has no batch size (looked for {looked})",
                             hint="pass --batch-size N (the batch the run was trained with)")
    source = int(cfg.batch_size)
    if target_batch < 1:
        raise LbconvertError(f"--target-batch {target_batch} must be a positive integer",
                             hint="pass e.g. --target-batch 8192")
    if target_batch < source:
        raise LbconvertError(
            f"--target-batch {target_batch} is smaller than the current batch {source} "
            f"({cfg.sources.get('batch_size', where)})",
            hint=f"large-batch conversion only scales up: pass --target-batch ≥ {source}")
    ratio = target_batch / source
    mult = lr_multiplier(rule, ratio)
    factor = ratio if fixed_factor is None else fixed_factor
    regime_name = "adapt" if fixed_factor is None else (
        "budget" if str(regime).strip().lower() == "budget" else f"{factor:g}")

    plan = Plan(
        source_batch=source, target_batch=target_batch, ratio=ratio, rule=rule,
        regime=regime_name, epochs_factor=factor,
        lr_old=cfg.lr, lr_new=None if cfg.lr is None else cfg.lr * mult, lr_multiplier=mult,
        epochs_old=cfg.epochs, epochs_new=None if cfg.epochs is None else cfg.epochs * factor,
        dataset_size=cfg.dataset_size, schedule=cfg.schedule or "constant",
        milestones_old=list(cfg.milestones), milestones_new=[m * factor for m in cfg.milestones],
        gamma=cfg.gamma, poly_power=cfg.poly_power, min_lr=cfg.min_lr,
        optimizer_old=cfg.optimizer, optimizer_new=optimizer,
        betas_old=None if cfg.betas is None else list(cfg.betas), eps_old=cfg.eps,
        momentum=0.9 if cfg.momentum is None else cfg.momentum,
        weight_decay=0.0 if cfg.weight_decay is None else cfg.weight_decay,
        nesterov=bool(cfg.nesterov), trust_coefficient=LARS_TRUST_COEFFICIENT,
        step_size_old=cfg.step_size,
        step_size_new=None if cfg.step_size is None else cfg.step_size * factor,
        max_steps_old=cfg.max_steps,
    )
    if plan.step_size_old and not plan.milestones_old and plan.epochs_old:
        # StepLR / timm "step" decays every step_size epochs: the same drops as milestones,
        # which is what lbconvert.plan.schedule reads.
        k = int(plan.epochs_old // plan.step_size_old)
        plan.milestones_old = [plan.step_size_old * i for i in range(1, k + 1)
                               if plan.step_size_old * i < plan.epochs_old]
        plan.milestones_new = [m * factor for m in plan.milestones_old]
    _plan_lr_and_length(plan, cfg)
    _plan_schedule_note(plan, cfg)
    plan_devices(plan, cfg, devices, max_per_device, ghost_batch)
    _plan_warmup(plan, cfg, warmup)
    _plan_lengths(plan, cfg)
    _plan_optimizer(plan, cfg)
    _plan_cost(plan)
    plan.notes.extend(filter(None, [regime_alternatives_note(plan)]))
    return plan


def _plan_schedule_note(plan: Plan, cfg: TrainConfig) -> None:
    """Say when the new run's LR is constant after warmup, and why: a config without a
    schedule would otherwise become one without a word."""
    if plan.schedule != "constant" or plan.milestones_old:
        return
    if cfg.schedule is None:
        looked = "schedule name, milestones, step size"
        plan.notes.insert(0, f"constant LR after warmup: the config has no LR schedule ({looked}"
                          " not found); if your training code decays the LR itself, move its "
                          f"drops or length × {plan.epochs_factor:g} with the epochs")
    else:
        key = cfg.keys.get("schedule", "the schedule")
        plan.notes.insert(0, f"constant LR after warmup: the config's {key} is {cfg.schedule}")


def _plan_lengths(plan: Plan, cfg: TrainConfig) -> None:
    """Schedule lengths the config holds beyond the fields above (T_max, cooldown_epochs,
    num_training_steps, ...): rescaled with the regime, or named for a check."""
    plan.lengths = schedule_lengths(cfg.raw, handled=set(cfg.keys.values()),
                                    epochs_factor=plan.epochs_factor, ratio=plan.ratio,
                                    epochs_old=plan.epochs_old,
                                    warmup_epochs=plan.warmup_epochs)
    for length in plan.lengths:
        if length.new is None:
            plan.warnings.append(f"not rescaled: check {length.key} = {length.old:g} "
                                 f"({length.reason})")
        elif not math.isclose(length.new, length.old):
            plan.changes.append(Change(length.key, length.old, length.new, length.reason))
        else:
            plan.notes.append(f"{length.key} = {length.old:g} kept: {length.reason}")


def _plan_lr_and_length(plan: Plan, cfg: TrainConfig) -> None:
    m, f = plan.ratio, plan.epochs_factor
    if m == 1.0:
        plan.notes.append(f"--target-batch {plan.target_batch} equals the current batch: "
                          "nothing to scale (M = 1)")
    else:
        plan.changes.append(Change("batch_size", plan.source_batch, plan.target_batch,
                                   f"--target-batch: M = {plan.target_batch}/"
                                   f"{plan.source_batch} = {m:g}"))
    if plan.lr_old is None:
        plan.warnings.append("no learning rate in the config or flags: the plan gives only the "
                             f"multiplier ×{plan.lr_multiplier:g}; pass --lr to get the value")
    elif plan.lr_multiplier != 1.0:
        reason = {"sqrt": f"√M = √{m:g} = {plan.lr_multiplier:.4g}: keeps the covariance of the "
                          "gradient noise per update (Hoffer et al. 2017)",
                  "linear": f"× M = {m:g}: linear scaling rule (Goyal et al. 2017)"}[plan.rule]
        plan.changes.append(Change("lr", plan.lr_old, plan.lr_new, reason))
    if f != 1.0:
        why = {"adapt": f"× M = {m:g}: same number of updates as the original run, regime "
                        "adaptation (Hoffer et al. 2017)"}.get(plan.regime,
                                                              f"× {f:g} (--regime {plan.regime})")
        if plan.epochs_old is not None:
            plan.changes.append(Change("epochs", plan.epochs_old, plan.epochs_new, why))
        if plan.milestones_old and plan.step_size_old is None and \
                plan.schedule in ("multistep", "step", "constant"):
            plan.changes.append(Change("milestones", plan.milestones_old, plan.milestones_new,
                                       f"LR drops move with the epochs ({why.split(':')[0]})"))
        if plan.step_size_old is not None:
            plan.changes.append(Change("step_size", plan.step_size_old, plan.step_size_new,
                                       "decay interval moves with the epochs "
                                       f"({why.split(':')[0]})"))
        if plan.schedule == "exponential" and plan.gamma:
            plan.exp_gamma_new = plan.gamma ** (1.0 / f)
            plan.changes.append(Change("gamma", plan.gamma, plan.exp_gamma_new,
                                       f"per-epoch decay ^(1/{f:g}): the same total decay over "
                                       "the longer run"))
        if plan.schedule in ("cosine", "poly", "linear"):
            plan.notes.append(f"{plan.schedule} schedule is a function of training progress: "
                              "its length keys in the config are rescaled with the epochs (see "
                              "the changes); one set in your code (T_max, num_training_steps) "
                              f"must cover the new run's {plan.epochs_new or 0:g} epochs")
    if plan.max_steps_old is not None:
        plan.max_steps_new = max(1, round(plan.max_steps_old * f / m))
        if plan.max_steps_new != plan.max_steps_old:
            plan.changes.append(Change("max_steps", plan.max_steps_old, plan.max_steps_new,
                                       f"samples seen × {f:g} at a batch × {m:g}"))
    if f > 1.0:
        plan.warnings.append(f"regime {plan.regime} trains {f:g}× the epochs: {f:g}× the compute "
                             "of the original run (Hoffer et al. 2017 trade compute for "
                             "generalization); use --regime budget to keep the epochs")


def _parse_warmup(warmup: str | float | None) -> float | None:
    """None → default; ``"none"`` → 0; a number of epochs ≥ 0 → itself."""
    if warmup is None or (isinstance(warmup, str) and warmup.strip().lower() in ("", "default")):
        return None
    if isinstance(warmup, str) and warmup.strip().lower() in ("none", "off", "0"):
        return 0.0
    try:
        value = float(warmup)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise LbconvertError(f"--warmup {warmup!r} is not a number of epochs or 'none'",
                             hint="pass e.g. --warmup 5, --warmup none, or leave it out")
    return value


def old_warmup_epochs(cfg: TrainConfig) -> float:
    """The config's warmup in epochs (from epochs, a ratio, or steps); 0 when none."""
    if cfg.warmup_epochs:
        return float(cfg.warmup_epochs)
    if cfg.warmup_ratio and cfg.epochs:
        return cfg.warmup_ratio * cfg.epochs
    if cfg.warmup_steps and cfg.dataset_size and cfg.batch_size:
        return cfg.warmup_steps * cfg.batch_size / cfg.dataset_size
    return 0.0


def _plan_warmup(plan: Plan, cfg: TrainConfig, warmup: str | float | None) -> None:
    requested = _parse_warmup(warmup)
    old = old_warmup_epochs(cfg)
    plan.warmup_epochs_old = old
    f, total = plan.epochs_factor, plan.epochs_new
    if requested is not None:
        plan.warmup_epochs = requested
        reason = "--warmup none" if requested == 0 else f"--warmup {requested:g}"
    else:
        base = max(old, GOYAL_WARMUP_EPOCHS)
        plan.warmup_epochs = base * f
        which = ("the config's warmup" if old > GOYAL_WARMUP_EPOCHS
                 else "Goyal et al. 2017's 5 epochs")
        reason = (f"gradual warmup: {which} × {f:g} (regime), the same share of training"
                  if f != 1.0 else f"gradual warmup: {which} (Goyal et al. 2017)")
        if 0 < old < GOYAL_WARMUP_EPOCHS:
            # A config warmup in epochs keeps its share of training (and its number of
            # updates) under the regime as old × f; the plan's ramp also has to carry the LR
            # from η to its new value, for which Goyal et al. found 5 epochs, so the longer
            # of the two is used and the user is told how to keep the config's own.
            reason += (f"; the config's own {old:g}-epoch warmup × {f:g} would be {old * f:g} "
                       f"epochs (the same updates), shorter than the {GOYAL_WARMUP_EPOCHS:g}-epoch "
                       f"floor for a ramp to the ×{plan.lr_multiplier:.4g} LR; pass --warmup "
                       f"{old * f:g} to keep the config's share")
        if total is not None and plan.warmup_epochs > total / 10:
            plan.warnings.append(f"default warmup {plan.warmup_epochs:g} epochs would exceed a "
                                 f"tenth of training ({total:g} epochs): capped at {total / 10:g}")
            plan.warmup_epochs = total / 10
            reason += ", capped at a tenth of training"
    if requested is not None and total is not None and plan.warmup_epochs > total / 10:
        plan.warnings.append(f"warmup {plan.warmup_epochs:g} epochs is more than a tenth of "
                             f"training ({total:g} epochs)")
    if plan.lr_new is not None and plan.lr_old and plan.lr_new > plan.lr_old:
        plan.warmup_start_factor = plan.lr_old / plan.lr_new
        start = f"from the old LR {plan.lr_old:g} (start factor {plan.warmup_start_factor:.4g})"
    else:
        plan.warmup_start_factor = 0.0
        start = "from 0"
    if plan.warmup_epochs > 0:
        reason += f"; linear ramp {start} to the new LR"
    if plan.warmup_epochs != old:
        plan.changes.append(Change("warmup_epochs", old, plan.warmup_epochs, reason))


def optimizer_family(name: str | None) -> str | None:
    """``"adam"`` (Adam, AdamW, NAdam, RAdam, Adamax and tool spellings such as HF's
    ``adamw_torch``), ``"lamb"``, ``"lars"``, ``"sgd"``, ``"other"``; None when unknown."""
    if not name:
        return None
    n = name.lower()
    for family, words in (("lamb", ("lamb",)), ("lars", ("lars", "larc")),
                          ("adam", ("adam",)), ("sgd", ("sgd", "momentum", "nesterov"))):
        if any(w in n for w in words):
            return family
    return "other"


#: torch's Adam/AdamW defaults, used where the config sets no β or ε
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
#: LAMB's ε where the config sets none (You et al. 2020's BERT runs; timm's Lamb default)
LAMB_EPS = 1e-6


def _choose_optimizer(plan: Plan, cfg: TrainConfig) -> None:
    """Resolve ``auto`` by the run's optimizer and record the rule followed."""
    family = optimizer_family(cfg.optimizer)
    if plan.optimizer_new == "auto":
        if family in ("adam", "lamb"):
            plan.optimizer_new = "lamb"
            plan.optimizer_rule = (f"the run uses {cfg.optimizer} (Adam family) → LAMB, Adam's "
                                   "update with a layer-wise trust ratio (You et al. 2020)")
        else:
            plan.optimizer_new = "lars"
            was = f"uses {cfg.optimizer}" if cfg.optimizer else "names no optimizer"
            plan.optimizer_rule = (f"the run {was} → LARS, SGD with a layer-wise trust ratio "
                                   "(You et al. 2017)")
    else:
        plan.optimizer_rule = f"--optimizer {plan.optimizer_new}"
        if plan.optimizer_new == "keep":
            plan.optimizer_rule += f": the config's {cfg.optimizer or 'optimizer (SGD assumed)'}"
            if family == "adam":
                plan.optimizer_rule += (" with the Adam SDE scaling rule (Malladi et al. "
                                        "2022)")


def _plan_optimizer(plan: Plan, cfg: TrainConfig) -> None:
    _choose_optimizer(plan, cfg)
    plan.notes.append(f"optimizer rule: {plan.optimizer_rule}")
    if plan.optimizer_new == "lamb":
        _plan_lamb(plan, cfg)
    elif plan.optimizer_new == "keep" and optimizer_family(cfg.optimizer) == "adam":
        _plan_adam_rule(plan, cfg)
    if plan.optimizer_new != "lars":
        return
    plan.changes.append(Change(
        "optimizer", cfg.optimizer, "lars",
        "LARS, layer-wise trust ratio η‖w‖/(‖∇w‖+β‖w‖) (You et al. 2017), γ = the planned LR; "
        "η matched on the first batch so the median layer's step equals the SGD step at γ "
        "(fidelity benchmark, docs/fidelity.md: the paper's η = "
        f"{LARS_TRUST_COEFFICIENT:g} at γ = the scaled SGD rate made the median step 90–230× "
        "smaller than SGD's and closed no gap); momentum "
        f"{plan.momentum:g} and weight decay β = {plan.weight_decay:g} from the config"))
    plan.notes.append(
        "LARS steps are γ·η‖w‖/(‖∇w‖+β‖w‖) per layer; lbconvert's LARS sets η at its first "
        "step (trust_match) so the median layer moves as far as SGD at γ, and the other layers "
        f"keep their ratios to it. A LARS of your own needs that η, not {LARS_TRUST_COEFFICIENT:g}"
        ": print it from optimizer.param_groups[0]['trust_coefficient'] after one step")
    if cfg.momentum is None:
        plan.notes.append("momentum not in the config: LARS uses 0.9 (You et al. 2017)")
    if not plan.weight_decay:
        plan.notes.append("weight decay is 0: LARS's trust ratio reduces to η‖w‖/‖∇w‖")
    if optimizer_family(cfg.optimizer) in ("adam", "lamb", "other"):
        plan.warnings.append(f"the config uses {cfg.optimizer}, an adaptive optimizer: LARS is "
                             "SGD with momentum; its LR scale differs, re-tune or use "
                             "--optimizer lamb or keep")
    if plan.schedule == "poly" and plan.poly_power != LARS_POLY_POWER:
        plan.changes.append(Change("poly_power", plan.poly_power, LARS_POLY_POWER,
                                   "LARS runs used poly decay with power 2 (You et al. 2017)"))
        plan.poly_power = LARS_POLY_POWER


def _plan_lamb(plan: Plan, cfg: TrainConfig) -> None:
    """LAMB (You et al. 2020, Algorithm 2) with the config's β and its ε (or 1e-6)."""
    plan.betas = list(cfg.betas or ADAM_BETAS)
    plan.eps = cfg.eps if cfg.eps is not None else LAMB_EPS
    plan.changes.append(Change(
        "optimizer", cfg.optimizer, "lamb",
        "LAMB: Adam's bias-corrected moments, decoupled weight decay, then the layer-wise "
        "trust ratio min(‖w‖, 10)/‖update‖ (You et al. 2020, Algorithm 2), which trained BERT "
        "at batch 32k–64k; γ = the planned LR (√M scaling, as You et al. 2020 scale LAMB's); "
        f"β = ({plan.betas[0]:g}, {plan.betas[1]:g}) and weight decay {plan.weight_decay:g} "
        "from the config; biases and norm weights get neither the trust ratio nor decay"))
    if cfg.eps is None:
        plan.notes.append(f"ε not in the config: LAMB uses {LAMB_EPS:g} (You et al. 2020)")
    if optimizer_family(cfg.optimizer) not in ("adam", "lamb"):
        plan.warnings.append(f"--optimizer lamb for a run that uses "
                             f"{cfg.optimizer or 'an unnamed optimizer'}: LAMB is Adam-based; "
                             "its LR scale differs from SGD's, re-tune the LR")


def _plan_adam_rule(plan: Plan, cfg: TrainConfig) -> None:
    """The SDE scaling rule for Adam (Malladi et al. 2022, "On the SDEs and Scaling Rules for
    Adaptive Gradient Algorithms", Definition 4.3): for batch × M, η × √M, 1 − β1 and
    1 − β2 × M, ε ÷ √M. A β the rule would take to ≤ 0 (M(1 − β) ≥ 1) is kept, with a
    warning: the rule holds only while M(1 − β) < 1."""
    m = plan.ratio
    old_betas = list(cfg.betas or ADAM_BETAS)
    old_eps = cfg.eps if cfg.eps is not None else ADAM_EPS
    plan.betas, plan.eps = list(old_betas), old_eps
    if m == 1.0:
        return
    cite = "SDE scaling rule for Adam (Malladi et al. 2022)"
    for i, beta in enumerate(old_betas):
        new = round(1 - m * (1 - beta), 12)  # 1 − 16×0.1 is 0.6000000000000001 in floats
        if new <= 0:
            plan.warnings.append(
                f"Adam rule: β{i + 1} = 1 − M(1 − β{i + 1}) = 1 − {m:g}×{1 - beta:.3g} = "
                f"{new:.3g} ≤ 0, outside the rule (it needs M(1 − β) < 1, Malladi et al. "
                f"2022): β{i + 1} kept at {beta:g}; --optimizer lamb does not need it")
            continue
        plan.betas[i] = new
        plan.changes.append(Change(f"beta{i + 1}", beta, new,
                                   f"1 − β{i + 1} × M = {1 - beta:.3g} × {m:g}: {cite}"))
    plan.eps = float(f"{old_eps / math.sqrt(m):.12g}")
    plan.changes.append(Change("eps", old_eps, plan.eps, f"ε ÷ √M = ÷ {math.sqrt(m):.4g}: {cite}"))
    if plan.rule != "sqrt":
        plan.warnings.append(f"Adam rule: Malladi et al. 2022 pair the β/ε changes with LR × √M;"
                             f" --rule {plan.rule} gives × {plan.lr_multiplier:g}")
    for name, value in (("betas", cfg.betas), ("eps", cfg.eps)):
        if value is None:
            plan.notes.append(f"{name} not in the config: the Adam rule starts from torch's "
                              f"default {ADAM_BETAS if name == 'betas' else ADAM_EPS}")


def _plan_cost(plan: Plan) -> None:
    n = plan.dataset_size
    if n is None:
        plan.notes.append("dataset size unknown: pass --dataset-size N to see updates and samples")
        return
    plan.steps_per_epoch_old = math.ceil(n / plan.source_batch)
    plan.steps_per_epoch_new = math.ceil(n / plan.target_batch)
    if plan.epochs_old is not None:
        plan.updates_old = round(plan.steps_per_epoch_old * plan.epochs_old)
        plan.samples_old = round(n * plan.epochs_old)
    elif plan.max_steps_old is not None:
        plan.updates_old = plan.max_steps_old
        plan.samples_old = plan.max_steps_old * plan.source_batch
    if plan.epochs_new is not None:
        plan.updates_new = round(plan.steps_per_epoch_new * plan.epochs_new)
        exact = n / plan.target_batch
        if plan.steps_per_epoch_new > exact * 1.05:
            full = n * plan.epochs_new / plan.target_batch
            plan.notes.append(f"an epoch of {n} samples is {exact:.3g} batches of "
                              f"{plan.target_batch}; the last partial batch counts as a step "
                              f"({plan.steps_per_epoch_new} steps/epoch): {plan.updates_new} "
                              f"updates, {full:.0f} in full batches")
        plan.samples_new = round(n * plan.epochs_new)
    elif plan.max_steps_new is not None:
        plan.updates_new = plan.max_steps_new
        plan.samples_new = plan.max_steps_new * plan.target_batch


def without_batchnorm(plan: Plan, *, attention: bool, left_alone: int = 0) -> None:
    """Adjust ``plan`` for a model with no BatchNorm to convert (ConvNeXt, ViT, a detection
    backbone of FrozenBatchNorm2d): drop the ghost-batch change, notes and warnings (they do
    not apply), say so, and say what LARS is for.

    LARS was designed for and shown on conv nets with BatchNorm (AlexNet-BN to 8K, ResNet-50
    to 32K, You et al. 2017); for transformers (``attention``) the large-batch optimizer of
    the literature is LAMB (You et al. 2020), so LARS there is a warning, not a note.
    """
    plan.has_batchnorm = False
    plan.changes = [c for c in plan.changes if c.field != "ghost_batch_size"]
    plan.notes = [n for n in plan.notes if "ghost batch" not in n]
    plan.warnings = [w for w in plan.warnings if "ghost batch" not in w]
    frozen = (f" ({left_alone} left as they are: frozen, eval-only or weight-normalizing)"
              if left_alone else "")
    plan.notes.insert(0, f"no BatchNorm to convert{frozen}: nothing for GhostBatchNorm to do; "
                      "the plan is the learning rate, regime and warmup only")
    if plan.optimizer_new != "lars":
        return
    if attention:
        plan.warnings.append("LARS (You et al. 2017) is a choice for conv nets with BatchNorm; "
                             "this model uses attention, for which LAMB (You et al. 2020, "
                             "--optimizer lamb) or your own optimizer (--optimizer keep) is the "
                             "usual choice")
    else:
        plan.notes.append("LARS (You et al. 2017) was shown on conv nets with BatchNorm; "
                          "without BatchNorm it is untested there: --optimizer lamb (You et "
                          "al. 2020) or --optimizer keep (your optimizer, scaled LR)")
