"""The smoke arms data-parallel (gloo, CPU, 2 processes): the distributed converted arm equals
one process on the whole batch, a full run reports both ranks, a failed rank ends the run with
one clear error instead of a hang, and the CLI's --nproc-per-node works end to end."""

from __future__ import annotations

import copy
import datetime
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from lbconvert.errors import LbconvertError
from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke import distributed
from lbconvert.smoke.arms import ArmSetup, run_arm
from lbconvert.smoke.data import make_pool
from lbconvert.smoke.distributed import DistContext
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.proxy import Proxy, choose_proxy
from lbconvert.smoke.run import run_smoke
from tests.helpers import TinyNet
from tests.helpers import tiny_plan as _plan

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5


def _models():
    torch.manual_seed(0)
    model = TinyNet()
    return model, rewrite(copy.deepcopy(model), 2).model


def _converted_arm(ctx: DistContext | None):
    """The converted arm for STEPS updates of 16 samples, ghost 2; with ``ctx`` each rank
    trains on its 8 in 2 accumulated micro-batches of 4 (the plan's grad_accum = 2)."""
    model, conv = _models()
    plan = _plan(warmup_epochs=0.0, grad_accum=2, ghost_batch_size=2)
    proxy = Proxy(small_batch=4, large_batch=16, ratio=4.0, plan_ratio=16.0, ghost_batch_size=2,
                  plan_ghost_batch_size=2, ghost_scaled=False, steps_per_epoch=4,
                  warmup_steps_plan=0, warmup_steps=0)
    pool = make_pool("synthetic", input_shape=(3, 6, 6), num_classes=4, output_dim=4,
                     pool_size=64, seed=0, device="cpu")
    setup = ArmSetup(model, conv, plan, proxy, pool, "cpu", None, ctx)
    runner = setup.build("converted")
    arm = run_arm(runner, STEPS, seed=0)
    weights = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    return weights, [m.distance for m in arm.marks], setup.micro["converted"], runner.share


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        ctx = DistContext(rank, world, 0, "gloo", "cpu")
        weights, distances, micro, share = _converted_arm(ctx)
        torch.save({"weights": weights, "distances": distances, "micro": micro, "share": share},
                   os.path.join(out_dir, f"arm{rank}.pt"))
        # the whole smoke run, as one rank of two (the process group is already there)
        model, conv = _models()
        opts = SmokeOptions(device="cpu", steps=8, progress=False, calibrate=True,
                            time_budget=4)
        res = run_smoke(model, conv, _plan(), opts, input_shape=(3, 6, 6), num_classes=4)
        with open(os.path.join(out_dir, f"smoke{rank}.json"), "w") as fh:
            json.dump(res.to_dict(), fh)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_worker, args=(2, str(out / "init"), str(out)),
                                          nprocs=2, join=True, start_method="fork")
    return out


def test_distributed_converted_arm_equals_one_process_on_the_whole_batch(two_ranks):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single, single_d, single_micro, single_share = _converted_arm(None)
    finally:
        torch.set_num_threads(before)
    start = dict(_models()[1].named_parameters())
    assert (single_micro, single_share) == (16, 16)
    for rank in range(2):
        got = torch.load(two_ranks / f"arm{rank}.pt", weights_only=True)
        assert (got["micro"], got["share"]) == (4, 8)  # 8 per rank, 2 micro-batches of 4
        for name, w in single.items():
            assert not torch.equal(w, start[name].detach())  # it trained
            # float32 rounding: the all-reduce sums the two halves in another order
            torch.testing.assert_close(got["weights"][name], w, rtol=1e-5, atol=1e-6)
        assert got["distances"] == pytest.approx(single_d, rel=1e-5)
    r0 = torch.load(two_ranks / "arm0.pt", weights_only=True)["weights"]
    r1 = torch.load(two_ranks / "arm1.pt", weights_only=True)["weights"]
    assert all(torch.equal(r0[n], r1[n]) for n in r0)  # DDP keeps the ranks identical


def test_full_smoke_run_reports_both_ranks(two_ranks):
    docs = [json.loads((two_ranks / f"smoke{r}.json").read_text()) for r in range(2)]
    layout = docs[0]["layout"]
    assert layout["world_size"] == 2 and layout["backend"] == "gloo"
    assert [r["rank"] for r in layout["ranks"]] == [0, 1]
    for r in layout["ranks"]:
        assert set(r["step_time"]) == {"original", "naive", "converted"}
        assert r["peak_memory_bytes"] > 0 and r["memory"] == "process peak RSS"
    # proxy for 2 ranks on the CPU: b_l = 2·128 capped, halves per rank, ghosts inside them
    assert layout["per_rank_batch"]["converted"] * 2 == docs[0]["proxy"]["large_batch"]
    assert layout["per_rank_batch"]["converted"] % docs[0]["proxy"]["ghost_batch_size"] == 0
    for name in ("original", "naive", "converted"):  # same weights on both ranks
        c0, c1 = docs[0]["arms"][name]["curve"], docs[1]["arms"][name]["curve"]
        assert c0["distance"] == c1["distance"] and len(c0["distance"]) > 0
        assert c0["loss"] == c1["loss"]  # the mean over both shares, agreed
    cal0, cal1 = docs[0]["calibration"], docs[1]["calibration"]  # --calibrate: same search
    # one trial when the plan's LR already passes (one-sided calibration), else ≥ 4
    assert len(cal0["trials"]) in (1, *range(4, 13)) and cal0["trials"] == cal1["trials"]
    assert cal0["multiplier"] == cal1["multiplier"]


def test_proxy_for_several_ranks_keeps_ghosts_inside_each_share():
    p = choose_proxy(_plan(source_batch=128, target_batch=8192, ratio=64.0,
                           ghost_batch_size=128), "cpu", None, world=2)
    assert p.large_batch == 256 and p.small_batch == 4  # the CPU cap is per device
    assert (p.large_batch // 2) % p.ghost_batch_size == 0
    single = choose_proxy(_plan(source_batch=128, target_batch=8192, ratio=64.0,
                                ghost_batch_size=128), "cpu", None)
    assert single.large_batch == 128  # one process: unchanged


def _failing_worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=2, timeout=datetime.timedelta(seconds=5))
    ctx = DistContext(rank, 2, 0, "gloo", "cpu", timeout_s=5)
    if rank == 1:
        os._exit(3)  # this rank dies before the collective
    try:
        distributed.all_reduce([1.0], ctx)
        outcome = "returned"
    except LbconvertError as exc:
        outcome = f"LbconvertError: {exc}"
    except Exception as exc:  # pragma: no cover - the failure this test is about
        outcome = f"{type(exc).__name__}: {exc}"
    Path(out_file).write_text(outcome)
    os._exit(0)


def test_a_failed_rank_ends_the_others_with_one_clear_error_not_a_hang(tmp_path):
    mp = multiprocessing.get_context("fork")
    out = tmp_path / "rank0.txt"
    procs = [mp.Process(target=_failing_worker, args=(r, str(tmp_path / "init"), str(out)))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a rank hung"
    text = out.read_text()
    assert text.startswith("LbconvertError: smoke test, rank 0 of 2: all_reduce(sum)"), text
    assert "another rank failed or stopped answering" in text and "\n" not in text


def test_several_processes_from_python_need_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model, conv = _models()
    with pytest.raises(LbconvertError, match="torchrun"):
        run_smoke(model, conv, _plan(), SmokeOptions(device="cpu", steps=6, nproc_per_node=2),
                  input_shape=(3, 6, 6), num_classes=4)


#: On PYTHONPATH, it makes every process's smoke run a fixed number of updates (no clock).
FIXED_STEPS_SITE = Path(__file__).resolve().parent / "fixed_steps_site"


def _cli(*args: str, cwd: Path, smoke_steps: int = 6) -> subprocess.CompletedProcess:
    """``lbconvert ARGS`` in a fresh process whose smoke arms (and every rank's) make
    ``smoke_steps`` updates on simulated time, whatever --smoke-time says."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXED_STEPS_SITE), str(ROOT)]),
           "OMP_NUM_THREADS": "1", "LBCONVERT_TEST_SMOKE_STEPS": str(smoke_steps)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "lbconvert", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_nproc_per_node_writes_one_report_with_two_ranks(tmp_path):
    out = tmp_path / "out"
    proc = _cli(str(ROOT / "fixtures/examples/cifar_resnet.py"), "--config",
                str(ROOT / "fixtures/examples/cifar_resnet.yaml"), "--target-batch", "8192",
                "--nproc-per-node", "2", "--input-shape", "3,8,8", "--smoke-batch", "2",
                "--smoke-time", "30", "--out", str(out), cwd=tmp_path)
    assert (out / "report.json").exists(), proc.stderr[-3000:]
    doc = json.loads((out / "report.json").read_text())
    assert proc.returncode == (0 if doc["verdict"]["ok"] else 1), proc.stderr[-3000:]
    assert doc["smoke"]["run"] is True, doc["smoke"].get("reason")
    assert {arm["steps"] for arm in doc["smoke"]["arms"].values()} == {6}  # not time-sized
    assert doc["smoke"]["layout"]["world_size"] == 2
    assert [r["rank"] for r in doc["smoke"]["layout"]["ranks"]] == [0, 1]
    assert "Smoke layout: 2 processes (gloo, torchrun)" in (out / "report.md").read_text()
    # rank 0 rendered its summary (one "report.json  <path>/report.json" row), rank 1 nothing
    assert sum("report.json" in line for line in proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_a_failing_rank_is_one_error_line(tmp_path):
    data = tmp_path / "data.py"
    data.write_text(
        "import os\nimport torch\n\n\ndef make():\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        raise RuntimeError('disk of rank 1 unreadable')\n"
        "    return torch.randn(64, 3, 8, 8), torch.randint(0, 10, (64,))\n"
    )
    proc = _cli(str(ROOT / "fixtures/examples/cifar_resnet.py"), "--config",
                str(ROOT / "fixtures/examples/cifar_resnet.yaml"), "--target-batch", "8192",
                "--nproc-per-node", "2", "--input-shape", "3,8,8", "--smoke-time", "60",
                "--no-verify", "--no-export", "--data", f"{data}:make", cwd=tmp_path)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("lbconvert: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "rank 1 of 2" in errors[0] and "disk of rank 1 unreadable" in errors[0]
    assert "Traceback" not in proc.stderr


def test_nproc_per_node_with_no_smoke_is_refused_before_any_work(cli):
    """Only the smoke test runs over several processes: with --no-smoke the flag would do
    nothing, so it is a one-line input error (exit 2), not a silent no-op."""
    from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL

    code, _, err = cli(EXAMPLE_MODEL, "--config", EXAMPLE_CONFIG, "--target-batch", "1024",
                       "--no-smoke", "--nproc-per-node", "2", "--no-export")
    assert code == 2
    first = err.strip().splitlines()[0]
    assert first.startswith("lbconvert: error:")
    assert "--nproc-per-node 2" in first and "--no-smoke" in first
