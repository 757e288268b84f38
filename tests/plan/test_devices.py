"""The ghost-batch default as a rule with a range (issue 23): inside what the fidelity
benchmark covered, ghost 4 with the benchmark as its evidence; beyond it, the original
per-device batch with the large-scale risk stated; the regime's published alternatives."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbconvert.config.read import TrainConfig, load_config
from lbconvert.plan.evidence import GHOST_EVIDENCE, beyond_coverage, original_per_device_batch
from lbconvert.plan.plan import make_plan

IMAGENET = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "imagenet_resnet50.yaml"


def ghost_reason(plan) -> str:
    return next(c.reason for c in plan.changes if c.field == "ghost_batch_size")


def small_cfg(**kw) -> TrainConfig:
    base = dict(batch_size=16, lr=0.05, epochs=10, dataset_size=2048, num_classes=10,
                schedule="cosine", optimizer="sgd", momentum=0.9, weight_decay=5e-4)
    base.update(kw)
    return TrainConfig(**base)


def test_imagenet_resnet50_does_not_rest_on_the_small_benchmark():
    cfg = load_config(IMAGENET)
    assert (cfg.batch_size, cfg.devices, cfg.dataset_size, cfg.num_classes) == (
        256, 8, 1281167, 1000)
    plan = make_plan(cfg, 8192)
    # the conservative choice: the original's 32 images per device (Goyal et al. 2017)
    assert plan.ghost_batch_size == 32
    why = ghost_reason(plan)
    assert "closed ≥ 90%" not in why  # the small benchmark is not offered as evidence
    assert "Masters & Luschi" not in why
    for phrase in ("beyond what the fidelity benchmark covered", "training samples 1,281,167 >",
                   "classes 1,000 >", "original per-device batch 32 >", "Wu & He 2018",
                   "23.6%", "34.7%"):
        assert phrase in why, phrase


def test_imagenet_plan_lists_the_published_keep_the_epochs_recipes():
    plan = make_plan(load_config(IMAGENET), 8192)
    note = next(n for n in plan.notes if n.startswith("alternative to 32× the epochs"))
    for phrase in ("--regime budget", "Goyal et al. 2017", "8k", "90", "23.74%", "23.60%",
                   "5 warmup epochs", "You et al. 2017", "32k", "--regime budget closed"):
        assert phrase in note, phrase
    # a plan that already keeps the epochs has no alternative to offer
    budget = make_plan(load_config(IMAGENET), 8192, regime="budget")
    assert not any(n.startswith("alternative to") for n in budget.notes)


def test_explicit_small_ghost_beyond_the_benchmark_is_warned_with_the_risk():
    plan = make_plan(load_config(IMAGENET), 8192, ghost_batch=4)
    assert plan.ghost_batch_size == 4
    assert any("--ghost-batch 4 is below the original per-device batch 32" in w
               and "34.7%" in w for w in plan.warnings)
    plan = make_plan(load_config(IMAGENET), 8192, ghost_batch=32)
    assert not any("--ghost-batch" in w for w in plan.warnings)


def test_inside_the_benchmark_the_default_is_ghost_4_with_its_evidence():
    plan = make_plan(small_cfg(), 128)
    assert plan.ghost_batch_size == 4
    why = ghost_reason(plan)
    assert "closed ≥ 90%" in why and "docs/fidelity.md" in why
    assert "Not known" not in why and "Wu & He" not in why


def test_unknown_size_keeps_ghost_4_but_states_the_risk():
    plan = make_plan(small_cfg(dataset_size=None, num_classes=None), 128)
    assert plan.ghost_batch_size == 4
    why = ghost_reason(plan)
    assert "Not known from the config: training samples, classes" in why
    assert "Wu & He 2018" in why and "--ghost-batch 16" in why


@pytest.mark.parametrize("field, value", [
    ("dataset_size", GHOST_EVIDENCE.max_samples + 1),
    ("num_classes", GHOST_EVIDENCE.max_classes + 1),
    ("batch_size", GHOST_EVIDENCE.max_per_device_batch * 2),
])
def test_each_dimension_beyond_coverage_alone_falls_back(field, value):
    cfg = small_cfg(**{field: value})
    plan = make_plan(cfg, cfg.batch_size * 8)
    assert plan.ghost_batch_size == cfg.batch_size  # the original per-device batch
    assert "beyond what the fidelity benchmark covered" in ghost_reason(plan)
    # at the edge of the range it is still inside
    edge = {"dataset_size": GHOST_EVIDENCE.max_samples, "num_classes": GHOST_EVIDENCE.max_classes,
            "batch_size": GHOST_EVIDENCE.max_per_device_batch}[field]
    assert make_plan(small_cfg(**{field: edge}), 128).ghost_batch_size == 4


def test_fallback_is_capped_by_the_new_per_device_batch():
    cfg = load_config(IMAGENET)
    plan = make_plan(cfg, 8192, devices=512)  # 16 per device < the original's 32
    assert plan.ghost_batch_size == 16
    assert "capped at the per-device batch 16" in ghost_reason(plan)


def test_coverage_matches_an_independent_reading_of_the_config():
    # per-device batch = global / (devices × accumulation), whatever per_device_batch says
    cfg = TrainConfig(batch_size=256, devices=8, grad_accum=2)
    assert original_per_device_batch(cfg) == 16
    beyond, unknown = beyond_coverage(cfg)
    assert beyond == [] and unknown == ["training samples", "classes"]
    beyond, _ = beyond_coverage(cfg, n_params=GHOST_EVIDENCE.max_params + 1)
    assert beyond == [f"parameters {GHOST_EVIDENCE.max_params + 1:,} > "
                      f"{GHOST_EVIDENCE.max_params:,}"]


@pytest.mark.parametrize("micro, ghost", [(100, 32), (120, 32), (130, 128), (200, 128)])
def test_remainder_note_says_what_ghost_batchnorm_does_with_it(micro, ghost):
    from lbconvert.nn.ghost_chunks import chunk_sizes

    plan = make_plan(small_cfg(batch_size=micro), micro, ghost_batch=ghost)
    note = next(n for n in plan.notes if "not a multiple of the ghost batch" in n)
    sizes = chunk_sizes(micro, ghost, values_per_sample=4)
    if sizes[-1] > ghost:  # merged: the note names the size GhostBatchNorm really uses
        assert f"merge into the last ghost batch ({sizes[-1]} samples)" in note
    else:
        assert sizes[-1] == micro % ghost and "form one smaller ghost batch" in note


def test_conservative_default_above_32_is_a_note_not_a_warning_against_itself():
    cfg = small_cfg(batch_size=128, dataset_size=50_000)  # beyond the benchmark: ghost = 128
    plan = make_plan(cfg, 8192)
    assert plan.ghost_batch_size == 128
    assert not any("generalize best" in w for w in plan.warnings)
    assert any("generalize best" in n and "--ghost-batch 32" in n for n in plan.notes)
    # the user's own choice above 32 is still warned
    plan = make_plan(small_cfg(), 1024, ghost_batch=64)
    assert any("ghost batch 64 > 32" in w for w in plan.warnings)
