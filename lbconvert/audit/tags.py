"""Logged tag → canonical series name, after normalising the tools' many spellings.

Exact aliases (:data:`lbconvert.audit.history.SERIES_ALIASES`) are tried first; then a tag is
split into words at ``/ _ - . :`` and space, and matched by the words it holds:

- ``Loss/train``, ``train_loss_epoch``, ``training/loss_step`` → ``train_loss``;
- ``val/loss``, ``Loss/validation``, ``eval_loss_epoch`` → ``val_loss``;
- ``lr-SGD``, ``lr-Adam/pg1``, ``train/learning_rate``, ``optimizer/lr`` → ``lr``;
- ``train/weight_distance``, ``weights/dist``, ``diffusion/w_dist`` → ``weight_distance``
  (lbconvert's DiffusionMonitor tags ``lbconvert/weight_distance[/group]`` are exact aliases);
- ``train/grad_norm``, ``grad-norm`` → ``grad_norm``; ``val/acc``, ``eval_top1`` →
  ``val_accuracy``.

A tag whose words are not all known for one name (``loss/train_reg``, ``lr_finder/loss``)
is left alone: a wrong series is worse than none, and ``--tag CANONICAL=TAG`` maps one by hand.
"""

from __future__ import annotations

import re

CANONICAL = ("train_loss", "val_loss", "lr", "weight_distance", "grad_norm", "val_accuracy")

_SPLIT = re.compile(r"[/_\-.: ]+")
_PREFIX = {"train", "training", "trainer", "opt", "optim", "optimizer", "lbconvert", "metrics",
           "metric", "scalars", "charts"}
_VAL = {"val", "valid", "validation", "eval", "evaluation", "test", "dev"}
_AGG = {"step", "epoch", "avg", "mean", "total", "running", "smoothed", "ema"}
_TRAIN = {"train", "training"}


def words(tag: str) -> list[str]:
    """The tag's words, lower case (``"Loss/train_epoch"`` → ``["loss", "train", "epoch"]``)."""
    return [w for w in _SPLIT.split(tag.strip().lower()) if w]


def normalised_name(tag: str) -> str | None:
    """The canonical series for ``tag`` by its words, or None when it is not clearly one."""
    w = words(tag)
    if not w:
        return None
    ws = set(w)
    if "loss" in ws:
        rest = ws - {"loss"} - _AGG
        if rest & _VAL and rest <= _VAL:
            return "val_loss"
        if rest <= _TRAIN:
            return "train_loss"
        return None
    core = [x for x in w if x not in _PREFIX]
    if core and (core[0] == "lr" or core[:2] == ["learning", "rate"]):
        # lr, lr-SGD, lr-Adam/pg1, lr/group0, learning_rate, learning_rate/pg0
        return "lr"
    if ws & {"distance", "dist"} and ws <= (_PREFIX | _AGG | {
            "weight", "weights", "w", "distance", "dist", "diffusion", "l2", "from", "init",
            "w0", "to", "param", "params", "parameter", "parameters"}):
        return "weight_distance"
    if {"grad", "norm"} <= ws and ws <= _PREFIX | _AGG | {"grad", "norm", "total", "l2"}:
        return "grad_norm"
    if ws & {"acc", "accuracy", "top1"} and ws & _VAL and \
            ws <= _VAL | _AGG | {"acc", "accuracy", "top1"}:
        return "val_accuracy"
    return None


def parse_tag_overrides(items: list[str] | None) -> dict[str, str]:
    """``["lr=opt/LR", ...]`` → ``{"opt/LR": "lr"}`` (logged tag → canonical name).

    Raises LbconvertError naming the flag when an item is not ``CANONICAL=TAG`` or names an
    unknown canonical series.
    """
    from lbconvert.errors import LbconvertError

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, tag = item.partition("=")
        name, tag = name.strip(), tag.strip()
        if not sep or not name or not tag:
            raise LbconvertError(f"--tag {item!r} is not CANONICAL=TAG",
                                 hint="e.g. --tag train_loss=Loss/train_total")
        if name not in CANONICAL:
            raise LbconvertError(f"--tag {item!r}: {name!r} is not a canonical series",
                                 hint=f"use one of {', '.join(CANONICAL)}")
        out[tag] = name
    return out
