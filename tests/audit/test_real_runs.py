"""The audit on run folders written by the real tools (fixtures/make_runs_real.py, issue 13).

Baseline batch 16 for 20 epochs of 1,500 samples = 1880 updates; the naive run (batch 512,
same epochs) makes 3 × 20 = 60; the adapted one (640 epochs) 1920. Each layout is pointed at
as a user would, with only ``--baseline``.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.audit.pipeline import audit_runs
from lbconvert.audit.read.discover import find_runs
from lbconvert.cli import app
from lbconvert.errors import LbconvertError

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real"


@functools.lru_cache(maxsize=1)
def mlflow_dir() -> Path:
    """The MLflow store as MLflow wrote it (kept gzipped in fixtures/: 1.2 MB → 52 KB)."""
    folder = Path(tempfile.mkdtemp(prefix="lbconvert-mlflow-")) / "mlflow"
    folder.mkdir()
    with gzip.open(REAL / "mlflow" / "mlflow.db.gz", "rb") as src, \
            open(folder / "mlflow.db", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return folder

BASELINE_UPDATES = 20 * math.ceil(1500 / 16)  # 1880
runner = CliRunner()


def invoke(*args):
    r = runner.invoke(app, ["audit", *map(str, args)])
    assert "Traceback" not in r.output
    return r


def by_name(report):
    return {r.history.name: r for r in report.runs}


def rules(run):
    return {f.rule_id for f in run.findings}


LAYOUTS = {  # folder a user passes, baseline, naive run name, adapted run name
    "summarywriter": ("summarywriter", "summarywriter/baseline", "naive", "adapted"),
    "lightning-tb": ("lightning", "lightning/lightning_logs/version_0",
                     "lightning_logs/version_1", "lightning_logs/version_2"),
    "lightning-csv": ("lightning-csv", "lightning-csv/lightning_logs/version_0",
                      "lightning_logs/version_1", "lightning_logs/version_2"),
    "hf": ("hf", "hf/baseline", "naive", None),
    "hparams": ("hparams/naive", "summarywriter/baseline", "naive", None),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_naive_run_gets_lb001_with_update_counts_and_adapted_does_not(layout):
    folder, base, naive, adapted = LAYOUTS[layout]
    report = audit_runs([REAL / folder], baseline_dir=REAL / base, logs_only=True)
    runs = by_name(report)
    f = next(f for f in runs[naive].findings if f.rule_id == "LB001")
    assert f.severity == "error" and report.exit_code == 1
    assert (f.evidence["updates"], f.evidence["baseline_updates"]) == (60, BASELINE_UPDATES)
    assert f.evidence["M"] == 512 / 16
    if adapted is not None:
        assert runs[adapted].history.total_updates == 1920
        assert "LB001" not in rules(runs[adapted])
    # the baseline folder, when inside the audited one, is not audited against itself: the
    # report holds exactly the naive and adapted runs, none with the baseline's batch or length
    assert sorted(runs) == sorted(n for n in (naive, adapted) if n is not None)
    assert all((r.history.total_updates, r.history.batch_size) != (BASELINE_UPDATES, 16)
               for r in report.runs)


def test_mlflow_database_every_run_and_selection():
    report = audit_runs([mlflow_dir()], baseline_dir=mlflow_dir(),
                        baseline_run="baseline-bs16")
    runs = by_name(report)
    assert set(runs) == {"naive-bs512", "adapted-bs512"}  # the baseline is not re-audited
    assert "LB001" in rules(runs["naive-bs512"]) and "LB001" not in rules(runs["adapted-bs512"])
    assert runs["naive-bs512"].history.path.endswith("mlflow.db#naive-bs512")
    refs = find_runs(mlflow_dir())
    assert [r.name for r in refs] == ["baseline-bs16", "naive-bs512", "adapted-bs512"]
    one = find_runs(mlflow_dir(), run_id=refs[1].mlflow_run)
    assert [r.name for r in one] == ["naive-bs512"]
    assert [r.name for r in find_runs(mlflow_dir(), run_name="adapted-bs512")] == \
        ["adapted-bs512"]
    with pytest.raises(LbconvertError, match="--baseline .* holds 3 runs"):
        audit_runs([mlflow_dir()], baseline_dir=mlflow_dir())


def test_multi_run_folders_one_result_per_run_in_every_format():
    r = invoke(REAL / "lightning", "--logs-only", "-f", "json")
    doc = json.loads(r.output)
    assert [x["run"]["name"] for x in doc["runs"]] == [
        f"lightning_logs/version_{i}" for i in range(3)]
    assert [x["run"]["config"]["batch_size"]["value"] for x in doc["runs"]] == [16, 512, 512]
    md = invoke(REAL / "lightning", "--logs-only", "-f", "markdown").output
    assert md.count("### ") == 3
    junit = invoke(REAL / "lightning", "--logs-only", "-f", "junit").output
    assert junit.count("<testsuite ") == 3


def test_run_flag_selects_and_an_unknown_name_lists_the_runs():
    r = invoke(REAL / "summarywriter", "--run", "naive", "-f", "json")
    assert [x["run"]["name"] for x in json.loads(r.output)["runs"]] == ["naive"]
    bad = invoke(REAL / "summarywriter", "--run", "nope")
    assert bad.exit_code == 2 and "--run 'nope' matches no run" in bad.output
    assert "adapted, baseline, naive" in bad.output


def test_lightning_tensorboard_and_csv_count_the_same_updates():
    tb = audit_runs([REAL / "lightning"], logs_only=True)
    csv = audit_runs([REAL / "lightning-csv"])
    assert [r.history.total_updates for r in tb.runs] == \
        [r.history.total_updates for r in csv.runs] == [1880, 60, 1920]


def test_config_found_beside_the_event_files_keeps_file_and_line():
    report = audit_runs([REAL / "summarywriter" / "naive"])
    h = report.runs[0].history
    cv = h.config["batch_size"]
    assert cv.value == 512 and cv.file.endswith("naive/config.yaml")
    assert "batch_size: 512" in Path(cv.file).read_text().splitlines()[cv.line - 1]


def test_add_hparams_fill_the_config_and_the_metric_tag_is_unused():
    h = audit_runs([REAL / "hparams"]).runs[0].history
    assert (h.batch_size, h.get("lr"), h.get("epochs")) == (512, 0.05, 20)
    assert "TensorBoard hparams" in h.config["batch_size"].source
    assert "hparam/final_loss" in h.unused_tags


def _copy_events(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("events.out.tfevents.*"):
        shutil.copy(f, dst / f.name)
    return dst


def test_unknown_batch_is_never_a_silent_pass(tmp_path):
    run = _copy_events(REAL / "summarywriter" / "naive", tmp_path / "naive")
    r = invoke(run, "-f", "json")
    assert r.exit_code == 0
    f = [f for x in json.loads(r.output)["runs"] for f in x["findings"]]
    lb11 = [x for x in f if x["rule_id"] == "LB011"]
    assert len(lb11) == 1 and "--batch-size" in lb11[0]["fix"]
    assert {x["severity"] for x in f} <= {"note", "warning"}
    assert invoke(run, "--fail-on", "warning").exit_code == 1
    # a baseline without a config: update counts are still judged
    base = _copy_events(REAL / "summarywriter" / "baseline", tmp_path / "baseline")
    r = invoke(run, "--baseline", base, "-f", "json")
    assert r.exit_code == 1
    found = {x["rule_id"]: x for x in json.loads(r.output)["runs"][0]["findings"]}
    assert found["LB001"]["evidence"]["baseline_updates"] == BASELINE_UPDATES
    assert found["LB011"]["severity"] == "warning"


def test_reference_epochs_and_updates(tmp_path):
    adapted = REAL / "summarywriter" / "adapted"
    naive = REAL / "summarywriter" / "naive"
    assert invoke(adapted, "--reference-batch", 16, "--reference-epochs", 20).exit_code == 0
    r = invoke(naive, "--reference-batch", 16, "--reference-epochs", 20, "-f", "json")
    f = json.loads(r.output)["runs"][0]["findings"]
    lb1 = next(x for x in f if x["rule_id"] == "LB001")
    assert r.exit_code == 1 and lb1["evidence"]["baseline_updates"] == BASELINE_UPDATES
    assert invoke(naive, "--reference-updates", 1880).exit_code == 1
    # --reference-batch alone: length assumed, said, and only a warning
    r = invoke(adapted, "--reference-batch", 16, "-f", "json")
    lb1 = next(x for x in json.loads(r.output)["runs"][0]["findings"] if x["rule_id"] == "LB001")
    assert r.exit_code == 0 and lb1["severity"] == "warning" and "assumed" in lb1["message"]


def test_hydra_and_wandb_configs_are_discovered(tmp_path):
    hydra = _copy_events(REAL / "summarywriter" / "naive", tmp_path / "outputs" / "tb")
    (tmp_path / "outputs" / ".hydra").mkdir()
    (tmp_path / "outputs" / ".hydra" / "config.yaml").write_text(
        "model:\n  name: mlp\ntrain:\n  batch_size: 512\n  epochs: 20\noptimizer:\n  lr: 0.05\n")
    h = audit_runs([tmp_path / "outputs"]).runs[0].history
    assert h.batch_size == 512 and h.config["batch_size"].line == 4
    assert hydra.name == "tb" and h.name == "tb"
    wb = _copy_events(REAL / "summarywriter" / "naive", tmp_path / "wb")
    (wb / "files").mkdir()
    (wb / "files" / "config.yaml").write_text(
        "_wandb:\n  value:\n    cli_version: 0.21.0\nbatch_size:\n  value: 512\n"
        "lr:\n  value: 0.05\n")
    h = audit_runs([wb]).runs[0].history
    assert h.batch_size == 512 and h.config["batch_size"].line == 5


MANIFEST = json.loads((REAL / "corrupt" / "MANIFEST.json").read_text())


@pytest.mark.parametrize("case,reason,severity", [
    ("truncated", "truncated", "note"), ("flipped-byte", "data checksum", "warning"),
    ("bad-length", "length checksum", "warning")])
def test_damaged_event_files_are_read_to_the_damage_and_located(case, reason, severity):
    r = invoke(REAL / "corrupt" / case, "-f", "json")
    run = json.loads(r.output)["runs"][0]
    f = next(x for x in run["findings"] if x["rule_id"] == "LB012")
    d = f["evidence"]
    assert (d["reason"], f["severity"]) == (reason, severity)
    assert d["offset"] == MANIFEST["bad_length_record_at"]  # the record holding the damage
    assert d["records_kept"] == run["run"]["damage"][0]["records_kept"] > 0
    assert f["file"].endswith(".1") and "at byte" in f["message"]


@pytest.mark.parametrize("case", ["zero-bytes", "random-bytes"])
def test_nothing_readable_is_exit_2_with_one_line(case):
    r = invoke(REAL / "corrupt" / case)
    assert r.exit_code == 2
    assert "no readable TensorBoard record" in r.output and len(r.output.splitlines()) <= 2


def test_hf_summary_entry_is_not_a_loss_point():
    h = audit_runs([REAL / "hf" / "baseline"], logs_only=True).runs[0].history
    loss = h.series["train_loss"]
    state = json.loads((REAL / "hf" / "baseline" / "trainer_state.json").read_text())
    points = [e for e in state["log_history"] if "loss" in e]
    assert len(loss) == len(points) and loss.steps[-1] == points[-1]["step"]
    assert "train_runtime" not in h.raw_series
    assert any("end-of-training summary" in n for n in h.notes)


def test_hf_checkpoint_folder_audits_its_state_and_only_weights():
    from lbconvert.audit.read.checkpoints import checkpoint_files

    ck = REAL / "hf" / "naive" / "checkpoint-60"
    assert [p.name for p in checkpoint_files(ck)] == ["model.safetensors"]
    h = audit_runs([ck]).runs[0].history
    assert h.format == "hf" and h.total_updates == 60 and "weight_distance" not in h.series
    files = sorted(p.parent.name for p in checkpoint_files(REAL / "hf" / "naive"))
    assert files == ["checkpoint-30", "checkpoint-60"]


def test_distance_from_checkpoints_after_step_0_is_labelled_not_compared():
    pytest.importorskip("torch")
    from lbconvert.audit.pipeline import analyze, baseline_from_run
    from lbconvert.audit.read.checkpoints import read_distance
    from lbconvert.audit.read.detect import read_run

    logs = REAL / "lightning" / "lightning_logs"
    # the audit leaves these out (fewer than 3 before the LR drop, none at 0: logs first);
    # read here on purpose, the labelling is what is tested
    def with_distance(path):
        h = read_run(path)
        assert "weight_distance" not in h.series and any("checkpoints not read" in n
                                                          for n in h.notes)
        read_distance(path, h)
        return h.finalize()

    h = with_distance(logs / "version_2")
    run = analyze(h, baseline_from_run(with_distance(logs / "version_0")))
    assert h.distance_origin == 480 and not h.distance_from_init  # epoch=159-step=480.ckpt
    assert h.to_dict()["distance_from_init"] is False
    assert "weight distance from 4 checkpoints (start step 480)" in h.notes  # not 480.0
    assert "LB004" not in rules(run) or all(
        "baseline_value_at_drop" not in f.evidence for f in run.findings)
    assert "not comparable" in run.skipped.get("LB010", "not comparable")


def test_verbose_lists_tags_and_tag_flag_maps_one():
    run = REAL / "lightning" / "lightning_logs" / "version_1"
    quiet = invoke(run, "--logs-only")
    assert "logged tag(s) not used (-v lists them" in quiet.output
    loud = invoke(run, "--logs-only", "-v")
    assert "tags used:" in loud.output and "train_loss ← train_loss_step" in loud.output
    assert "tags not used:" in loud.output and "train_loss_epoch" in loud.output
    r = invoke(run, "--logs-only", "--tag", "train_loss=train_loss_epoch", "-f", "json")
    h = json.loads(r.output)["runs"][0]["run"]
    assert h["series"]["train_loss"]["tag"] == "train_loss_epoch"
    assert "train_loss_step" in h["unused_tags"] and h["tag_map"] == {
        "train_loss_epoch": "train_loss"}
    assert invoke(run, "--tag", "nonsense").exit_code == 2


def test_a_folder_with_some_unreadable_runs_audits_the_rest_and_exits_2():
    r = invoke(REAL / "corrupt", "-f", "json")
    doc = json.loads(r.stdout)  # stderr names the unreadable runs too
    assert r.exit_code == 2 and doc["exit_code"] == 2
    assert sorted(u["run"] for u in doc["unreadable"]) == ["random-bytes", "zero-bytes"]
    assert sorted(x["run"]["name"] for x in doc["runs"]) == ["bad-length", "flipped-byte",
                                                              "truncated"]
    assert all(any(f["rule_id"] == "LB012" for f in x["findings"]) for x in doc["runs"])
    md = invoke(REAL / "corrupt", "-f", "markdown").output
    assert "### `zero-bytes`: cannot read" in md


@pytest.mark.parametrize("name", ["trainer_state.json", "metrics.csv", "hparams.yaml",
                                  "summary.csv", "mlflow.db", "config.yaml",
                                  "events.out.tfevents.1.x"])
@pytest.mark.parametrize("content", [b"", b"step,epoch\n1,x\n{[: \n",
                                     bytes(range(256)) * 8])
def test_no_file_content_gives_a_traceback(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    r = invoke(tmp_path)
    assert r.exit_code in (0, 1, 2)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


def test_unreadable_runs_are_sarif_tool_notifications():
    import jsonschema

    from lbconvert.audit.render import render
    from tests.helpers import SARIF_SCHEMA

    report = audit_runs([REAL / "corrupt"])
    doc = json.loads(render(report, "sarif"))
    jsonschema.Draft7Validator(SARIF_SCHEMA).validate(doc)
    inv = doc["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    texts = [n["message"]["text"] for n in inv["toolExecutionNotifications"]]
    assert len(texts) == 2 and all("no readable TensorBoard record" in t for t in texts)
    assert {r["ruleId"] for r in doc["runs"][0]["results"]} >= {"LB012"}


def test_hf_weight_series_from_checkpoint_folders_model_files_only():
    pytest.importorskip("safetensors")
    from lbconvert.audit.read.checkpoints import read_distance

    # read directly: the audit itself skips these two (one before the LR drop, test_trackers)
    h = read_distance(REAL / "hf" / "naive")
    h.finalize()
    d = h.series["weight_distance"]
    assert d.steps == [30.0, 60.0] and d.values[0] == 0.0 and d.values[1] > 0
    assert h.distance_origin == 30 and not h.distance_from_init
    assert not any("not used" in n for n in h.notes)  # optimizer.pt & co. never tried


def test_eval_writer_subfolder_is_part_of_its_run(tmp_path):
    run = _copy_events(REAL / "summarywriter" / "naive", tmp_path / "run")
    _copy_events(REAL / "summarywriter" / "baseline", run / "eval")
    (run / "config.yaml").write_text((REAL / "summarywriter" / "naive" / "config.yaml")
                                     .read_text())
    other = _copy_events(REAL / "summarywriter" / "adapted", tmp_path / "run" / "other")
    names = [r.name for r in find_runs(tmp_path)]
    assert names == ["run", "run/other"] and other.is_dir()


def test_an_mlflow_db_file_is_audited_as_its_folder_is():
    db = mlflow_dir() / "mlflow.db"
    r = invoke(db, "--baseline", db, "--baseline-run", "baseline-bs16", "-f", "json")
    doc = json.loads(r.output)
    by_name = {x["run"]["name"]: {f["rule_id"] for f in x["findings"]} for x in doc["runs"]}
    assert set(by_name) == {"naive-bs512", "adapted-bs512"} and r.exit_code == 1
    assert "LB001" in by_name["naive-bs512"] and "LB001" not in by_name["adapted-bs512"]
    # the file and its folder together: each run once
    both = json.loads(invoke(db, db.parent, "-f", "json").output)
    assert sorted(x["run"]["name"] for x in both["runs"]) == \
        ["adapted-bs512", "baseline-bs16", "naive-bs512"]


@pytest.mark.parametrize("file", ["hf/baseline/trainer_state.json"])
def test_a_file_instead_of_its_folder_names_the_folder(file):
    path = REAL / file
    for args in ((path,), (REAL / "hf" / "naive", "--baseline", path)):
        r = invoke(*args)
        assert r.exit_code == 2
        assert "is a file, not a run folder" in r.output and str(path.parent) in r.output
        assert "does not exist" not in r.output


def test_rules_that_could_not_run_are_listed_in_table_and_markdown(tmp_path):
    # no baseline: LB001 cannot judge the 60 updates; a clean table must not read as a pass
    naive = REAL / "lightning" / "lightning_logs" / "version_1"
    table = invoke(naive, "--logs-only").output
    assert "not judged: LB001 (no --baseline or --reference-batch)" in table
    md = invoke(naive, "--logs-only", "-f", "markdown").output
    assert "Not judged: LB001 (no --baseline or --reference-batch)" in md
    # an unknown batch reads "unknown" in Markdown, not "None"
    run = _copy_events(REAL / "summarywriter" / "naive", tmp_path / "naive")
    md = invoke(run, "-f", "markdown").output
    assert "at batch unknown" in md and "batch None" not in md


def test_a_run_given_twice_is_audited_once():
    naive = REAL / "summarywriter" / "naive"
    report = audit_runs([naive, REAL / "summarywriter", Path(str(naive) + "/")],
                        baseline_dir=REAL / "summarywriter" / "baseline", logs_only=True)
    names = [r.history.path for r in report.runs]
    assert len(names) == len(set(names)) == 2  # naive and adapted; the baseline is not audited
    assert report.counts()["error"] == 1


def test_unreadable_runs_are_in_every_ci_format_and_on_stderr(tmp_path):
    import xml.etree.ElementTree as ET

    from lbconvert.audit.render import render

    report = audit_runs([REAL / "corrupt"])
    assert report.exit_code == 2
    gh = render(report, "github")
    assert sum(ln.startswith("::error") and "cannot read" in ln for ln in gh.splitlines()) == 2
    root = ET.fromstring(render(report, "junit"))
    errors = [s for s in root.iter("testsuite") if s.get("errors") == "1"]
    assert sorted(s.get("name").rsplit("/", 1)[-1] for s in errors) == ["random-bytes",
                                                                         "zero-bytes"]
    assert all(s.find("testcase/error") is not None for s in errors)
    gl = json.loads(render(report, "gitlab"))
    assert sum(i["check_name"] == "unreadable-run" for i in gl) == 2
    assert len({i["fingerprint"] for i in gl}) == len(gl)
    # machine output on stdout (or a file): the reason for exit 2 is on stderr too
    r = invoke(REAL / "corrupt", "-f", "sarif", "--output", tmp_path / "a.sarif")
    assert r.exit_code == 2 and r.output.count("lbconvert: error: cannot read") == 2


def test_unknown_baseline_run_names_the_baseline_run_flag():
    r = invoke(mlflow_dir(), "--baseline", mlflow_dir(), "--baseline-run", "nope")
    assert r.exit_code == 2
    assert "--baseline-run 'nope' matches no run" in r.output and "'--run" not in r.output
    assert "to --baseline-run" in r.output


def test_runs_logged_per_epoch_are_converted_to_updates(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    for name, batch, first in (("base", 16, 0), ("naive", 512, 1)):  # epochs from 0 / from 1
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(
            f"batch_size: {batch}\nlr: 0.05\nepochs: 20\ndataset_size: 1500\n")
        with SummaryWriter(str(tmp_path / name)) as w:
            for epoch in range(first, first + 20):  # add_scalar(tag, value, epoch)
                w.add_scalar("train/loss", 1.0 / (epoch + 1), epoch)
    report = audit_runs([tmp_path / "naive"], baseline_dir=tmp_path / "base")
    run = report.runs[0]
    assert run.history.total_updates == 60 and run.history.series["train_loss"].steps[-1] == 60
    assert any("steps read as epochs (counted from 1)" in n for n in run.history.notes)
    lb1 = next(f for f in run.findings if f.rule_id == "LB001")  # was a silent pass: 20 vs 20
    assert (lb1.evidence["updates"], lb1.evidence["baseline_updates"]) == (60, BASELINE_UPDATES)
    assert report.exit_code == 1
    # without the dataset size the steps cannot be converted: a note names the flag
    (tmp_path / "naive" / "config.yaml").write_text("batch_size: 512\nlr: 0.05\nepochs: 20\n")
    h = audit_runs([tmp_path / "naive"]).runs[0].history
    assert h.total_updates == 20 and any("pass --dataset-size N" in n for n in h.notes)
    # a run whose steps are updates is left alone (the real SummaryWriter fixtures)
    h = audit_runs([REAL / "summarywriter" / "naive"], logs_only=True).runs[0].history
    assert h.total_updates == 60 and not any("read as epochs" in n for n in h.notes)


def test_a_tag_flag_naming_no_logged_tag_is_noted():
    r = invoke(REAL / "summarywriter" / "naive", "--tag", "val_loss=Loss/vall", "-f", "json")
    notes = json.loads(r.stdout)["runs"][0]["run"]["notes"]
    assert any("--tag val_loss=Loss/vall: this run logged no tag 'Loss/vall'" in n
               for n in notes)
