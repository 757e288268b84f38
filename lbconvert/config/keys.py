"""Key aliases, schedule names and known data-set sizes used when reading training configs.

The one alias table of lbconvert: ``convert``/``plan`` and ``audit`` both read configs
through :class:`KeyLookup` with :data:`FIELD_KEYS` / :data:`BATCH_KEYS`.

A key pattern is a dotted suffix of a key path: ``"lr"`` matches ``optimizer.lr`` and
``optimizer.init_args.lr`` (LightningCLI's ``init_args`` level is transparent);
``"optimizer.name"`` matches only a ``name`` under an ``optimizer`` section.
"""

from __future__ import annotations

from typing import Any, Callable

from lbconvert.config.document import flatten

# Batch-size keys and the stance each one implies: "per-device" / "global" when the key
# name says so, None when the stance comes from the format (see config.py).
BATCH_KEYS: tuple[tuple[str, str | None], ...] = (
    ("per_device_train_batch_size", "per-device"),
    ("global_batch_size", "global"),
    ("total_batch_size", "global"),
    ("effective_batch_size", "global"),
    ("batch_size_per_device", "per-device"),
    ("batch_size_per_gpu", "per-device"),
    ("per_device_batch_size", "per-device"),
    ("micro_batch_size", "per-device"),
    ("batch_size", None),
    ("train_batch_size", None),
    ("train_batch", None),  # bearpaw/pytorch-classification --train-batch
    ("batch_size_train", None),
    ("train_bs", None),
    ("batch", None),
    ("bs", None),
    ("b", None),  # weiaicunzai/pytorch-cifar100 train.py -b
)

FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning_rate", "base_lr", "init_lr", "initial_lr", "max_lr", "peak_lr"),
    # "epoch" last: pytorch-cifar100's settings.EPOCH is the run length.
    "epochs": ("epochs", "max_epochs", "num_train_epochs", "num_epochs", "n_epochs",
               "total_epochs", "train_epochs", "nb_epochs", "max_epoch", "epoch"),
    "max_steps": ("max_steps", "total_steps", "max_iters", "max_iter", "num_steps", "train_steps",
                  "num_iterations", "total_iters", "max_iterations", "train_iters"),
    # pytorch-cifar100's -warm is epochs; a bare numeric "warmup" is read as epochs too.
    "warmup_epochs": ("warmup_epochs", "warmup_epoch", "lr_warmup_epochs", "warm_epochs", "warm",
                      "warmup", "warm_up"),
    "warmup_steps": ("warmup_steps", "warmup_iters", "lr_warmup_steps", "warmup_updates"),
    "warmup_ratio": ("warmup_ratio", "warmup_fraction", "warmup_proportion", "warmup_pct"),
    "schedule": ("sched", "lr_scheduler_type", "lr_scheduler.class_path", "scheduler.class_path",
                 "scheduler.name", "scheduler.type", "lr_scheduler.name", "lr_scheduler.type",
                 "scheduler", "lr_scheduler", "schedule", "lr_schedule", "lr_policy"),
    # A list under bearpaw's "schedule" (--schedule 81 122) or mmcv's lr_config.step is the
    # milestones; a string there is a schedule name (above).
    "milestones": ("milestones", "decay_milestones", "lr_milestones", "lr_steps", "lr_decay_epochs",
                   "step_epochs", "milestone", "schedule", "lr_schedule", "decay_schedule",
                   "lr_config.step"),
    "step_size": ("step_size", "lr_step_size", "decay_epochs", "lr_decay_every", "decay_every",
                  "lr_step"),
    "gamma": ("gamma", "decay_rate", "lr_decay_rate", "lr_gamma", "lr_decay"),
    "poly_power": ("poly_power", "lr_power", "power"),
    "min_lr": ("min_lr", "eta_min", "lr_min", "min_learning_rate", "final_lr"),
    "optimizer": ("opt", "optim", "optimizer.class_path", "optimizer.name", "optimizer.type",
                  "optim.name", "optim.type", "optimizer_name", "optimizer", "optimizer_type"),
    "momentum": ("momentum", "sgd_momentum", "opt_momentum"),
    "weight_decay": ("weight_decay", "wd", "weight_decay_rate"),
    "nesterov": ("nesterov",),
    # Adam-family: timm opt_betas/opt_eps, HF adam_beta1/adam_beta2/adam_epsilon, torch's and
    # LightningCLI's betas/eps
    "betas": ("opt_betas", "adam_betas", "betas"),
    "beta1": ("adam_beta1", "beta1", "beta_1"),
    "beta2": ("adam_beta2", "beta2", "beta_2"),
    "eps": ("adam_epsilon", "adam_eps", "opt_eps", "optimizer.eps", "optim.eps", "opt.eps",
            "optimizer.epsilon", "epsilon", "eps"),
    "dataset_size": ("dataset_size", "num_train", "num_samples", "train_size", "n_train",
                     "num_train_samples", "train_num_samples", "num_train_examples",
                     "train_samples", "num_examples", "n_samples"),
    "devices": ("devices", "num_devices", "gpus", "num_gpus", "n_gpus", "n_gpu", "world_size",
                "nproc_per_node", "num_processes"),
    "num_nodes": ("num_nodes", "nnodes"),
    "grad_accum": ("gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum_steps",
                   "grad_accum", "accum_steps", "accumulation_steps", "gradient_accumulation",
                   "accum_iter"),
    "input_shape": ("input_size", "input_shape", "img_size", "image_size"),
    "in_chans": ("in_chans", "in_channels", "num_channels"),
    "num_classes": ("num_classes", "n_classes", "num_labels", "classes"),
    "dataset_name": ("dataset.name", "data.name", "dataset_name", "data_name", "dataset"),
    "data_dir": ("data_dir", "data", "data_path", "data_root"),
    "ghost_batch_size": ("ghost_batch_size", "ghost_batch", "virtual_batch_size", "ghost_bn"),
}

# Sections where a key most likely belongs when it appears more than once.
PREFERRED_SECTIONS: dict[str, tuple[str, ...]] = {
    "lr": ("optimizer", "optim", "opt", "solver"),
    "momentum": ("optimizer", "optim", "opt", "solver"),
    "weight_decay": ("optimizer", "optim", "opt", "solver"),
    "betas": ("optimizer", "optim", "opt", "solver"),
    "eps": ("optimizer", "optim", "opt", "solver"),
    "batch_size": ("data", "train", "dataloader", "training", "loader"),
    "epochs": ("trainer", "train", "training"),
    "max_steps": ("trainer", "train", "training"),
    "devices": ("trainer",),
    "grad_accum": ("trainer",),
    "milestones": ("scheduler", "lr_scheduler", "sched"),
    "gamma": ("scheduler", "lr_scheduler", "sched"),
}

# Path components naming evaluation-time settings; keys under them are never the training
# batch, LR or length.
EVAL_SECTIONS = frozenset({"val", "valid", "validation", "test", "eval", "evaluation",
                           "predict", "inference"})

# Normalised schedule name -> lbconvert's name (torch class names lower-cased, timm, HF).
SCHEDULE_NAMES: dict[str, str] = {
    "step": "step", "steplr": "step",
    "multistep": "multistep", "multisteplr": "multistep", "multi_step": "multistep",
    "piecewise": "multistep",
    "cosine": "cosine", "cosineannealinglr": "cosine", "cosine_with_min_lr": "cosine",
    "cosine_with_restarts": "cosine", "cosineannealingwarmrestarts": "cosine",
    "cosine_warmup_with_min_lr": "cosine",
    "poly": "poly", "polynomial": "poly", "polynomiallr": "poly",
    "linear": "linear", "linearlr": "linear",
    "constant": "constant", "constant_with_warmup": "constant", "constantlr": "constant",
    "none": "constant",
    "exponential": "exponential", "exponentiallr": "exponential", "exp": "exponential",
}

# Training-set sizes of well-known data sets (official train splits).
KNOWN_DATASETS: dict[str, int] = {
    "cifar10": 50_000,
    "cifar100": 50_000,
    "imagenet": 1_281_167,
    "imagenet1k": 1_281_167,
    "ilsvrc2012": 1_281_167,
    "mnist": 60_000,
    "fashionmnist": 60_000,
    "svhn": 73_257,
    "tinyimagenet": 100_000,
}


def normalise_dataset_name(name: str) -> str:
    """``"torch/CIFAR-10"`` → ``"cifar10"``: last path component, lower case, no separators."""
    last = name.replace(":", "/").rstrip("/").rsplit("/", 1)[-1]
    return "".join(ch for ch in last.lower() if ch.isalnum())


def norm_key(component: str) -> str:
    """A key component as matched: lower case, ``-`` read as ``_``."""
    return component.lower().replace("-", "_")


class KeyLookup:
    """Finds values by key pattern in a flattened document, best match first."""

    def __init__(self, data: dict[str, Any]):
        self.items = flatten(data)

    def find(self, name: str, patterns: tuple[str, ...],
             accept: Callable[[Any], bool]) -> tuple[str, Any] | None:
        """Best ``(dotted key, value)`` for ``patterns`` whose value ``accept`` takes.

        A key in the field's preferred section wins, then the earlier pattern, then the
        shallower key, then the earlier one in the file. Keys under evaluation sections
        (``val``, ``test`` ...) never match.
        """
        preferred = PREFERRED_SECTIONS.get(name, ())
        best: tuple[tuple[bool, int, int, int], str, Any] | None = None
        for order, (path, value) in enumerate(self.items):
            norm = [norm_key(c) for c in path if norm_key(c) != "init_args"]
            if any(c in EVAL_SECTIONS for c in norm[:-1]):
                continue
            for rank, pattern in enumerate(patterns):
                pat = pattern.split(".")
                if norm[-len(pat):] != pat or not accept(value):
                    continue
                in_section = any(c in preferred for c in norm[:-1])
                score = (not in_section, rank, len(norm), order)
                if best is None or score < best[0]:
                    best = (score, ".".join(path), value)
                break
        return None if best is None else (best[1], best[2])
