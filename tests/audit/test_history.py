"""RunHistory normalisation and config-by-alias with sources and lines."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.audit.history import RunHistory, Series, canonical_name
from lbconvert.audit.read.common import apply_config, find_line, load_document


def test_canonical_names():
    assert canonical_name("train/loss") == "train_loss"
    assert canonical_name("eval_loss") == "val_loss"
    assert canonical_name("lr-SGD") == "lr" and canonical_name("lr/group0") == "lr"
    assert canonical_name("weird") is None


def test_global_batch_from_per_device_devices_accum_with_source_and_line(tmp_path):
    f = tmp_path / "args.yaml"
    f.write_text("model: r50\nper_device_train_batch_size: 64\nworld_size: 8\n"
                 "gradient_accumulation_steps: 2\nlearning_rate: 0.4\n")
    h = RunHistory(path="r", format="t")
    apply_config(h, load_document(f), "args.yaml")
    assert h.batch_size == 64 * 8 * 2
    assert h.config["batch_size"].line == 2 and h.config["lr"].line == 5
    assert "64 per device × 8 devices × 2 accumulation" in h.config["batch_size"].source


def test_find_line_forms():
    text = 'a: 1\n  "lr": 0.1,\nwarmup = 5\n'
    assert (find_line(text, "a"), find_line(text, "lr"), find_line(text, "warmup")) == (1, 2, 3)
    assert find_line(text, "missing") is None


@settings(deadline=None)  # first call imports numpy
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-1e3, 1e3)), min_size=1, max_size=60))
def test_sorted_keeps_last_write_per_step(points):
    s = Series("x", [float(p[0]) for p in points], [p[1] for p in points])
    out = s.sorted()
    want = {}
    for step, v in points:
        want[float(step)] = v
    assert out.steps == sorted(want) and out.values == [want[k] for k in sorted(want)]


def test_epochs_done_counts_partial_batches():
    h = RunHistory(path="r", format="t")
    h.set("batch_size", 4096, "t")
    h.set("dataset_size", 50000, "t")
    h.total_updates = 13 * 10
    assert h.epochs_done == 10  # ⌈50000/4096⌉ = 13 updates per epoch
    assert math.isclose(h.samples_seen, 130 * 4096)
