"""patch_yaml: line edits keep comments, and anything unsure falls back (None)."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.export.yaml_edit import patch_yaml

TEXT = """\
# header comment
train:
  batch_size: 128   # per step
  epochs: 164

  workers: 4
opt:
  name: 'sgd'  # quoted
  milestones:
    - 81   # first drop
    - 122
  gamma: 0.1
tag: "a # not a comment"
"""


def _apply(changes):
    expected = yaml.safe_load(TEXT)
    for dotted, value in changes.items():
        node = expected
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return patch_yaml(TEXT, changes, expected), expected


def test_scalars_lists_and_new_keys_keep_comments():
    changes = {"train.batch_size": 1024, "opt.name": "lars", "opt.milestones": [648, 976],
               "train.warmup_epochs": 40, "tag": "b", "seed": 1}
    text, expected = _apply(changes)
    assert text is not None and yaml.safe_load(text) == expected
    assert "# header comment" in text
    assert "batch_size: 1024   # per step" in text
    assert "name: lars  # quoted" in text
    assert "    - 648\n    - 976\n" in text
    assert "  warmup_epochs: 40\n" in text and text.endswith("seed: 1\n")


def test_block_list_items_at_the_key_indent():
    text = "a: 1\nms:\n- 30\n- 60  # keep\nb: 2\n"
    out = patch_yaml(text, {"ms": [120, 240]}, {"a": 1, "ms": [120, 240], "b": 2})
    assert out == "a: 1\nms:\n- 120\n- 240\nb: 2\n"


def test_unsupported_edits_fall_back():
    assert _apply({"opt": {"class_path": "x"}})[0] is None  # a mapping value
    assert patch_yaml(TEXT, {"train.missing.deeper": 1}, {}) is None  # no such parent
    flow_map = "a: {b: 1}\n"
    assert patch_yaml(flow_map, {"a.b": 2}, {"a": {"b": 2}}) is None


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 10**6), lr=st.floats(1e-6, 10, allow_nan=False),
       ms=st.lists(st.integers(0, 10**5), min_size=1, max_size=5),
       name=st.text(min_size=1, max_size=10))
def test_patched_text_parses_to_the_expected_document(batch, lr, ms, name):
    text, expected = _apply({"train.batch_size": batch, "opt.gamma": lr, "opt.milestones": ms,
                             "opt.name": name})
    if text is not None:  # when it edits, the result is exact
        assert yaml.safe_load(text) == expected
    else:  # only strings YAML cannot write plainly on one line (newlines, escapes) fall back
        dumped = yaml.safe_dump(name, default_flow_style=True).strip().removesuffix("...")
        assert "\n" in dumped or "\\" in dumped
