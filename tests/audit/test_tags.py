"""Tag normalisation, --tag overrides and the unused-tag list."""

from __future__ import annotations

import pytest

from lbconvert.audit.history import RunHistory, canonical_name
from lbconvert.audit.tags import parse_tag_overrides
from lbconvert.errors import LbconvertError


@pytest.mark.parametrize("tag,name", [
    ("train/weight_distance", "weight_distance"), ("Loss/train", "train_loss"),
    ("train_loss_epoch", "train_loss"), ("train_loss_step", "train_loss"),
    ("lr-SGD", "lr"), ("lr-Adam/pg1", "lr"), ("train/learning_rate", "lr"),
    ("optimizer/lr", "lr"), ("Loss/validation", "val_loss"), ("eval/loss", "val_loss"),
    ("val_loss_epoch", "val_loss"), ("weights/dist", "weight_distance"),
    ("lbconvert/weight_distance", "weight_distance"),  # DiffusionMonitor (issue 15)
    ("lbconvert/weight_distance/layer1", "weight_distance/layer1"),
    ("train/grad_norm", "grad_norm"), ("val/acc", "val_accuracy"),
    ("hparam/final_loss", None), ("loss/train_reg", None), ("epoch", None),
    ("hp_metric", None), ("lr_finder/loss", None),
])
def test_normalised_tags(tag, name):
    assert canonical_name(tag) == name


def test_tag_override_wins_and_unused_tags_are_listed():
    h = RunHistory(path="r", format="t")
    for step in (1, 2, 3):
        h.add_scalar("loss", step, 1.0 / step)
        h.add_scalar("objective/total", step, 2.0 / step)
        h.add_scalar("epoch", step, 0)
    h.tag_map = parse_tag_overrides(["train_loss=objective/total"])
    h.finalize()
    assert h.series["train_loss"].tag == "objective/total"
    assert h.series["train_loss"].values == [2.0, 1.0, 2.0 / 3]
    assert h.unused_tags == ["epoch", "loss"]
    assert h.to_dict()["unused_tags"] == ["epoch", "loss"]


def test_bad_tag_override_is_a_user_error():
    with pytest.raises(LbconvertError, match="CANONICAL=TAG"):
        parse_tag_overrides(["loss"])
    with pytest.raises(LbconvertError, match="not a canonical series"):
        parse_tag_overrides(["losss=a/b"])
