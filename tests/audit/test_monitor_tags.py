"""The tags DiffusionMonitor and NoiseScale log are recognised by the audit."""

from __future__ import annotations

from lbconvert.audit.history import RunHistory, canonical_name
from lbconvert.monitor.diffusion import DISTANCE_TAG, TRUST_TAGS
from lbconvert.monitor.noise_scale import TAGS


def test_monitor_tags_have_canonical_names():
    assert canonical_name(DISTANCE_TAG) == "weight_distance"
    assert canonical_name(f"{DISTANCE_TAG}/layer1") == "weight_distance/layer1"
    assert canonical_name(TRUST_TAGS[0]) == "trust_ratio_median"
    assert canonical_name(TAGS["b_simple"]) == "noise_scale"


def test_monitor_distance_wins_over_other_distance_tags():
    h = RunHistory(path="run", format="test")
    for step in (1, 2):
        h.add_scalar("distance", step, 9.0)
        h.add_scalar(DISTANCE_TAG, step, float(step))
        h.add_scalar(f"{DISTANCE_TAG}/fc", step, 0.5 * step)
    h.finalize()
    assert h.series["weight_distance"].tag == DISTANCE_TAG
    assert h.series["weight_distance/fc"].values == [0.5, 1.0]


def test_hf_tensorboard_train_prefix():
    assert canonical_name("train/lbconvert/weight_distance") == "weight_distance"
    assert canonical_name("train/lbconvert/weight_distance/h") == "weight_distance/h"
