"""The CPU proxy says where the fidelity benchmark's proxy evidence ends (issue 23).

docs/fidelity.md: on tabular at M = 128 the default CPU proxy 2/256 agreed on 2 of 6 rows and
4/512, 8/1024 passed a collapsing run; 16/2048 agreed on all. A verdict at a smaller proxy
than that, and smaller than the original batch, carries the numbers and the rerun."""

from __future__ import annotations

from lbconvert.smoke.proxy import PROXY_EVIDENCE_MIN, choose_proxy
from tests.helpers import tiny_plan


def _evidence_notes(proxy) -> list[str]:
    return [n for n in proxy.notes if "fidelity benchmark's proxy verdicts" in n]


def test_m128_default_cpu_proxy_carries_the_benchmarks_numbers_and_the_rerun() -> None:
    plan = tiny_plan(source_batch=32, target_batch=4096, ratio=128.0, ghost_batch_size=32)
    proxy = choose_proxy(plan, "cpu", None)
    assert (proxy.small_batch, proxy.large_batch) == (2, 256)
    (note,) = _evidence_notes(proxy)
    assert "proxy small batch 2 < 16" in note
    assert "two of six" in note and "--smoke-batch 16" in note


def test_no_evidence_note_at_or_above_the_bound_or_at_the_original_batch() -> None:
    plan = tiny_plan(source_batch=32, target_batch=4096, ratio=128.0, ghost_batch_size=32)
    assert not _evidence_notes(choose_proxy(plan, "cpu", PROXY_EVIDENCE_MIN))
    # the original batch itself is small: the proxy is the real batch, nothing extrapolated
    small = tiny_plan(source_batch=4, target_batch=128, ratio=32.0, ghost_batch_size=4)
    proxy = choose_proxy(small, "cpu", None)
    assert proxy.small_batch == 4 and not _evidence_notes(proxy)


def test_rerun_hint_never_asks_for_more_than_the_original_batch() -> None:
    plan = tiny_plan(source_batch=8, target_batch=8192, ratio=1024.0, ghost_batch_size=4)
    proxy = choose_proxy(plan, "cpu", None)
    (note,) = _evidence_notes(proxy)
    assert "--smoke-batch 8 " in note
