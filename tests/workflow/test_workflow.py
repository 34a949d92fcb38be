"""The whole DAG through the Snakemake CLI on the smoke study, in a private copy of the repo."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from ftgen.metrics import macro_f1
from ftgen.study import FineTune, Paths
from helpers import REPO, SMOKE, SNAKEMAKE, copy_repo, planned_jobs, run_in_copy, smk, write_study

R = Path("results/smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    return run_in_copy(tmp_path_factory, SMOKE)


def test_smoke_dag_writes_tables_and_plots(smoke_run):
    wd = smoke_run
    for name in ("transfer.csv", "transfer.parquet", "transfer.md", "transfer.manifest.json"):
        assert (wd / R / "tables" / name).stat().st_size > 0
    from ftgen.report import PLOTS

    for name in PLOTS:
        for ext in ("png", "pdf"):
            assert (wd / R / "plots" / f"{name}.{ext}").stat().st_size > 1000
    table = pl.read_csv(wd / R / "tables" / "transfer.csv")
    assert set(table["relation"]) == {"in-domain", "cross-domain", "cross-task"}
    # 3 fine-tunes x 6 eval datasets: 4 classification sets with accuracy, macro-F1 and acc_norm,
    # 2 generation sets with ROUGE-L and BLEU
    assert table.height == 3 * (4 * 3 + 2 * 2)
    assert set(table.filter(pl.col("eval_task") == "sentiment")["metric"]) == {"accuracy", "macro_f1", "acc_norm"}
    assert (
        table.filter(pl.col("relation") == "in-domain")["train_dataset"].to_list()
        == table.filter(pl.col("relation") == "in-domain")["eval_dataset"].to_list()
    )
    # every artifact kind carries a manifest
    assert (wd / R / "models" / "tiny" / "manifest.json").exists()
    assert list((wd / R / "finetuned" / "tiny").glob("*/manifest.json"))
    assert list((wd / R / "data").glob("*/manifest.json"))
    # training ran and logged progress with tqdm
    log = next((wd / R / "logs" / "finetune" / "tiny").glob("*.log")).read_text()
    assert "it/s" in log or "s/it" in log


def _scores_from_predictions(path: Path, metric: str, labels=None) -> float:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if metric == "macro_f1":
        return 100 * macro_f1([r["prediction"] for r in rows], [r["references"][0] for r in rows], labels)
    return sum(r["scores"][metric] for r in rows) / len(rows)


def test_table_numbers_match_prediction_files(smoke_run):
    wd = smoke_run
    table = pl.read_csv(wd / R / "tables" / "transfer.csv")
    labels = {"sentiment": ["negative", "positive"], "nli": ["entailment", "neutral", "contradiction"]}
    checked = 0
    for row in table.filter(pl.col("metric") != "bleu").iter_rows(named=True):
        tag = FineTune(row["train_dataset"], row["variant"], row["train_format"], row["train_size"], row["seeds"]).id
        cell = (row["eval_dataset"], row["format"], row["shots"])
        paths = Paths(wd / R, wd / "data" / "cache")
        metric, labels_of = row["metric"], labels.get(row["eval_task"])
        ft = _scores_from_predictions(Path(paths.predictions("tiny", tag, *cell)), metric, labels_of)
        base = _scores_from_predictions(Path(paths.predictions("tiny", "base", *cell)), metric, labels_of)
        assert row["finetuned"] == pytest.approx(ft, abs=1e-6)
        assert row["base"] == pytest.approx(base, abs=1e-6)
        assert row["delta"] == pytest.approx(ft - base, abs=1e-6)
        if "too few groups" in row["resampling_unit"]:  # one group: nothing to resample, no CI, no p
            assert row["n_groups"] == 1 and math.isnan(row["delta_lo"]) and math.isnan(row["p_value"])
        else:
            assert row["delta_lo"] <= row["delta"] <= row["delta_hi"] and 0 <= row["p_value"] <= 1
        checked += 1
    # accuracy/rougeL everywhere, macro_f1 and acc_norm on classification
    assert checked == 3 * 6 * 1 + 3 * 4 * 2


def test_rerun_is_a_no_op_and_report_builds(smoke_run):
    wd = smoke_run
    assert planned_jobs(wd, "--configfile", SMOKE) == {}
    smk(wd, "--configfile", SMOKE, "--report", "report.html")
    html = (wd / "report.html").read_text(errors="replace")
    assert "delta_heatmap.png" in html and "transfer.csv" in html


def test_adding_an_eval_dataset_plans_only_its_jobs(smoke_run):
    wd = smoke_run
    shutil.copy(wd / "tests/data/sent_film.jsonl", wd / "tests/data/sent_extra.jsonl")

    def add(cfg):
        spec = dict(cfg["datasets"]["sent_film"])
        spec["source"] = {**spec["source"], "path": "tests/data/sent_extra.jsonl"}
        cfg["datasets"]["sent_extra"] = spec

    study = write_study(wd, "smoke_plus_dataset.yaml", add)
    jobs = planned_jobs(wd, "--configfile", study)
    assert jobs == {"prepare_dataset": 1, "evaluate": 4, "aggregate": 1, "compute_table": 1, "plots": 1, "all": 1}


def test_changing_one_hyperparameter_reruns_only_that_model(smoke_run):
    wd = smoke_run
    study = write_study(
        wd, "smoke_lr.yaml", lambda c: c["finetune"].update(overrides={"nli_a": {"learning_rate": 0.03}})
    )
    jobs = planned_jobs(wd, "--configfile", study)
    assert jobs == {"finetune": 1, "evaluate": 6, "aggregate": 1, "compute_table": 1, "plots": 1, "all": 1}
    out = smk(wd, "-n", "--configfile", study).stdout
    assert "nli_a.sft.f0.n12.s0" in out and "sent_food.sft" not in out.split("rule finetune")[1].split("rule")[0]


def test_schema_violation_stops_before_any_job(smoke_run):
    wd = smoke_run

    def bad(cfg):
        cfg["study"] = "bad_schema"
        cfg["finetune"]["recipe"]["method"] = "qlora"

    study = write_study(wd, "bad_schema.yaml", bad)
    proc = smk(wd, "--cores", "1", "--configfile", study, check=False)  # a real run, not -n
    msg = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "bad_schema.yaml" in msg and "finetune.recipe.method" in msg
    assert not (wd / "results" / "bad_schema").exists(), "a job ran before the config was rejected"


def test_unknown_adapter_stops_before_any_job(smoke_run):
    wd = smoke_run
    study = write_study(wd, "bad_adapter.yaml", lambda c: c["datasets"]["nli_b"]["source"].update(adapter="xml"))
    proc = smk(wd, "-n", "--configfile", study, check=False)
    assert proc.returncode != 0
    assert "datasets.nli_b.source.adapter: unknown dataset adapter 'xml'" in proc.stdout + proc.stderr


def test_bad_data_row_fails_its_job_and_leaves_no_output(smoke_run):
    wd = smoke_run
    rows = (wd / "tests/data/nli_b.jsonl").read_text().splitlines()
    bad = json.loads(rows[4])
    bad["gold"] = "maybe"
    rows[4] = json.dumps(bad)
    (wd / "tests/data/nli_bad.jsonl").write_text("\n".join(rows) + "\n")

    def point(cfg):
        cfg["study"] = "smoke_bad"
        cfg["datasets"]["nli_b"]["source"]["path"] = "tests/data/nli_bad.jsonl"

    study = write_study(wd, "bad_data.yaml", point)
    target = "results/smoke_bad/data/nli_b/examples.parquet"
    proc = smk(wd, target, "--cores", "1", "--configfile", study, check=False)
    assert proc.returncode != 0
    log = (wd / "results/smoke_bad/logs/prepare_dataset/nli_b.log").read_text()
    assert "tests/data/nli_bad.jsonl:5: label 'maybe' not in the label set" in log
    assert not (wd / target).exists()


def test_default_study_dry_run_builds_its_dag(smoke_run):
    jobs = planned_jobs(smoke_run)  # config/config.yaml, no assets present: plans the fetches too
    assert jobs["fetch_asset"] == 3 and jobs["finetune"] == 4 and jobs["prepare_model"] == 1
    assert jobs["evaluate"] == 5 * (6 + 2)  # 5 models; zero-shot on 6 datasets, 1-shot on the 2 QG sets


def test_snakemake_lint_is_clean():
    proc = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yang2024_hpc_study_plans_without_hub_access(fresh_plan):
    """The paper's GPU protocol: 5 tasks, 18 datasets, SFT + 2 FTICL variants x 3 sizes, 2 formats, 4 shot counts."""
    jobs = fresh_plan("--configfile", "config/studies/yang2024.yaml")
    finetunes = 5 * 3 * 3  # train sets x variants x sizes (one seed)
    assert jobs == {
        "prepare_dataset": 18,
        "prepare_model": 1,
        "tokenize": 5 * 3,
        "finetune": finetunes,
        "evaluate": (1 + finetunes) * 18 * 2 * 4,
        "aggregate": 1,
        "compute_table": 1,
        "plots": 1,
        "all": 1,
    }


HPC_STUDIES = ("yang2024", "barnett2024", "gupta2025")


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """A private copy of the repo with nothing run in it (no data/cache/: assets plan as fetches)."""
    return copy_repo(tmp_path_factory, "fresh")


def test_hpc_studies_plan_as_one_dag(fresh_plan):
    """config/hpc.yaml (workflow/studies.smk): the three GPU studies in one DAG, each with the jobs
    it plans alone under its rule prefix; one `all`, and each pinned asset fetched once."""
    alone = {s: fresh_plan("--configfile", f"config/studies/{s}.yaml") for s in HPC_STUDIES}
    together = fresh_plan("--configfile", "config/hpc.yaml")
    # the BIG-bench wheel: barnett2024's NQ corpus and gupta2025's nq_rc / MC sets read it
    assert alone["barnett2024"]["fetch_asset"] == alone["gupta2025"]["fetch_asset"] == 1
    assert "fetch_asset" not in alone["yang2024"]
    prefixed = {
        f"{s}_{rule}": n for s, jobs in alone.items() for rule, n in jobs.items() if rule not in ("all", "fetch_asset")
    }
    # data/cache/pypi/ is shared: the first study listed keeps fetch_asset and fetches for all
    assert together == {**prefixed, "yang2024_fetch_asset": 1, "all": 1}
    # = the sum of the three plans, less their three `all` jobs (one `all` asks for every
    # study's targets), less the second fetch of the shared BIG-bench wheel
    assert sum(together.values()) == sum(sum(jobs.values()) for jobs in alone.values()) - 3 + 1 - 1
    one = fresh_plan("--configfile", "config/hpc.yaml", "--", "gupta2025_all")
    assert one == {f"gupta2025_{rule}": n for rule, n in alone["gupta2025"].items() if rule != "fetch_asset"} | {
        "yang2024_fetch_asset": 1
    }


def test_hpc_studies_pin_shared_assets_alike(fresh_copy, tmp_path):
    """Two studies sharing a cache must pin its assets alike: the first one's fetch_asset fetches for both."""
    wd = fresh_copy
    cfg = yaml.safe_load((wd / "config/studies/gupta2025.yaml").read_text())
    cfg["assets"] = {"bigbench": {"sha256": "0" * 64}}
    (wd / "config/studies/gupta_repinned.yaml").write_text(yaml.safe_dump(cfg))
    (wd / "config/two.yaml").write_text(
        yaml.safe_dump({"studies": ["config/studies/barnett2024.yaml", "config/studies/gupta_repinned.yaml"]})
    )
    proc = smk(wd, "-n", "--configfile", "config/two.yaml", check=False)
    assert proc.returncode != 0
    assert "config/studies/gupta_repinned.yaml: asset 'bigbench'" in proc.stdout + proc.stderr


def test_editing_a_local_data_file_reruns_from_its_dataset(smoke_run):
    """A JSONL source is an input of prepare_dataset: an edit reruns it (and what depends on it)."""
    src = smoke_run / "tests/data/sent_film.jsonl"
    before, stat = src.read_bytes(), src.stat()
    try:
        src.write_bytes(before.replace(b"dreadful", b"awful", 1))
        jobs = planned_jobs(smoke_run, "--configfile", SMOKE)
        assert jobs.get("prepare_dataset") == 1 and jobs.get("aggregate") == 1, jobs
    finally:
        src.write_bytes(before)
        import os

        os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(smoke_run, "--configfile", SMOKE) == {}


def test_a_deleted_predictions_file_is_rebuilt(smoke_run):
    """predictions.jsonl is a result too (the tables are computed from it): deleting one plans its
    evaluation again and what depends on it."""
    import os

    pred = next((smoke_run / R / "eval").rglob("predictions.jsonl"))
    kept, stat = pred.read_bytes(), pred.stat()
    pred.unlink()
    try:
        jobs = planned_jobs(smoke_run, "--configfile", SMOKE)
        assert jobs.get("evaluate") == 1 and jobs.get("aggregate") == 1, jobs
    finally:
        pred.write_bytes(kept)
        os.utime(pred, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(smoke_run, "--configfile", SMOKE) == {}
