"""The torch-free TensorBoard reader against files the real SummaryWriter wrote."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lbconvert.audit.read import tensorboard as tb

RUNS = Path(__file__).resolve().parents[2] / "fixtures" / "runs"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Scalars (old and new style), a text summary, two files and a subfolder."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb")
    w = SummaryWriter(str(root))
    expected = {"train/loss": [], "lr": []}
    for i in range(50):
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
        w.add_scalar("lr", 0.1 * (1 + i), i, new_style=True)
        expected["train/loss"].append((i, 1.0 / (i + 1)))
        expected["lr"].append((i, 0.1 * (1 + i)))
    w.add_text("args", '{"per_device_train_batch_size": 64, "learning_rate": 0.2}')
    w.close()
    w2 = SummaryWriter(str(root / "eval"))
    for i in range(0, 50, 10):
        w2.add_scalar("eval/loss", 2.0 - i / 100, i, new_style=True)
    w2.close()
    return root, expected


def test_scalars_old_and_new_style_match_what_was_written(written):
    root, expected = written
    h = tb.read(root)
    for tag, pts in expected.items():
        s = h.raw_series[tag]
        assert s.steps == [p[0] for p in pts]
        # event files store float32
        assert s.values == pytest.approx([p[1] for p in pts], rel=1e-6)
    assert h.series["train_loss"].tag == "train/loss"
    assert h.series["lr"].tag == "lr"
    assert h.raw_series["eval/loss"].values == pytest.approx([2.0, 1.9, 1.8, 1.7, 1.6])
    assert h.series["val_loss"].tag == "eval/loss"


def test_text_summary_json_fills_config(written):
    h = tb.read(written[0])
    assert h.get("per_device_batch") == 64
    assert h.get("lr") == 0.2
    assert "args/text_summary" in h.config["lr"].source


def test_crc_of_real_file_verifies_and_corruption_is_located(written):
    from lbconvert.audit.read.tfrecord import frame_records

    f = tb.event_files(written[0])[0]
    buf = f.read_bytes()
    offsets, lengths, damage = frame_records(buf, "f")
    assert damage is None and int(offsets[-1] + lengths[-1] + 4) == len(buf)
    # independent framing: walk the length fields
    pos, starts = 0, []
    while pos < len(buf):
        (length,) = struct.unpack_from("<Q", buf, pos)
        starts.append(pos + 12)
        pos += 16 + length
    assert offsets.tolist() == starts
    k = len(starts) // 2
    bad = bytearray(buf)
    bad[starts[k] + 1] ^= 0xFF
    offsets, _, damage = frame_records(bytes(bad), "f")
    assert (damage.reason, damage.offset, damage.records_kept) == ("data checksum",
                                                                    starts[k] - 12, k)
    assert offsets.size == k


def test_truncated_tail_record_is_dropped_and_said(written):
    from lbconvert.audit.read.tfrecord import frame_records

    f = tb.event_files(written[0])[0]
    buf = f.read_bytes()
    full, _, _ = frame_records(buf)
    cut, _, damage = frame_records(buf[:-3], "f")
    assert cut.tolist() == full.tolist()[:-1]
    assert damage.reason == "truncated" and damage.offset == int(full[-1]) - 12


def test_masked_crc32c_known_value():
    # CRC-32C("123456789") = 0xE3069283 (the standard check value); then TFRecord's mask.
    crc = 0xE3069283
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert tb.masked_crc32c(b"123456789") == masked


def test_same_points_as_event_accumulator_with_size_guidance_zero():
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RUNS / "baseline-bs128"
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    h = tb.read(run)
    old = acc.Tags()["scalars"]
    assert "train/loss" in old
    for tag in old:
        ev = acc.Scalars(tag)
        assert h.raw_series[tag].steps == [e.step for e in ev]
        assert h.raw_series[tag].values == pytest.approx([e.value for e in ev], rel=1e-7)
    import numpy as np
    from tensorboard.util import tensor_util

    for tag in acc.Tags()["tensors"]:
        evs = acc.Tensors(tag)
        if tag.endswith("text_summary"):
            continue
        vals = [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto))) for e in evs]
        assert h.raw_series[tag].values == pytest.approx(vals, rel=1e-7)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Step 0 (no step field), big steps (multi-byte varints), long and unicode tags."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("mixed")
    w = SummaryWriter(str(root))
    tags = ["a", "a/very/long/tag/name/over/sixteen/bytes", "ünïcode/loss", "x" * 16]
    for i, step in enumerate([0, 1, 127, 128, 16383, 16384, 2**21, 2**35]):
        for j, tag in enumerate(tags):
            w.add_scalar(tag, (i + 1) * (j - 1.5), step)
        w.add_scalar("new", -i, step, new_style=True)
    w.close()
    return root


def test_vectorised_path_equals_protobuf_path(mixed):
    from lbconvert.audit.read import tfrecord_fast

    for run in (mixed, RUNS / "baseline-bs128", RUNS / "undertrained-bs4096"):
        for f in tb.event_files(run):
            assert tfrecord_fast.frame(f.read_bytes()) is not None
        fast = tb.read(run)
        exact = tb.read(run, fast=False)  # every record through protobuf
        assert fast.raw_series.keys() == exact.raw_series.keys()
        for tag, s in exact.raw_series.items():
            assert fast.raw_series[tag].steps == s.steps, tag
            assert fast.raw_series[tag].values == s.values, tag
    h = tb.read(mixed)
    assert h.raw_series["ünïcode/loss"].steps == [0, 1, 127, 128, 16383, 16384, 2**21, 2**35]
    assert h.raw_series["new"].values == [0, -1, -2, -3, -4, -5, -6, -7]


def test_framing_gives_up_on_garbage():
    from lbconvert.audit.read import tfrecord_fast

    assert tfrecord_fast.frame(b"\x00" * 64) is None
    assert tfrecord_fast.frame(b"") is None
