"""The RAG DAG through the Snakemake CLI on the smoke RAG study (tiny model, hand-made corpora),
in a private copy of the repo; and the HPC RAG study's plan."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml

from helpers import planned_jobs, run_in_copy

STUDY = "config/studies/smoke-rag.yaml"
R = "results/smoke_rag"


@pytest.fixture(scope="module")
def rag_run(tmp_path_factory):
    return run_in_copy(tmp_path_factory, STUDY)


def variant(wd, name: str, mutate) -> str:
    cfg = yaml.safe_load((wd / STUDY).read_text())
    mutate(cfg)
    (wd / "config/studies" / name).write_text(yaml.safe_dump(cfg))
    return f"config/studies/{name}"


def test_rag_dag_writes_tables_plot_and_counts_missing_judgements(rag_run):
    wd = rag_run / R
    for path in ("tables/rag.csv", "tables/rag.md", "tables/rag.manifest.json", "plots/rag_vs_size.pdf"):
        assert (wd / path).stat().st_size > 0
    assert (wd / "plots/rag_vs_size.png").stat().st_size > 5000
    table = pl.read_csv(wd / "tables/rag.csv")
    metrics = {"accuracy", "completeness", "accuracy_samples", "completeness_samples", "exact_match", "token_f1"}
    assert set(table["metric"]) == metrics
    assert table.height == 2 * 3 * len(metrics)  # 2 domains x (base + sizes 4, 12)
    assert sorted(set(table["train_size"])) == [0, 4, 12]
    # the random tiny judge rarely writes a score: the rest is counted missing, never imputed
    judged = table.filter(pl.col("scale") == "1-5")
    assert judged["missing"].sum() > 0 and (judged["n"] == 6).all()
    for row in judged.iter_rows(named=True):
        folder = wd / "eval/tiny" / row["model_tag"] / row["dataset"] / "f0.k0"
        items = [json.loads(line) for line in (folder / "judgements.jsonl").read_text().splitlines()]
        key = "sample_mean" if row["metric"].endswith("_samples") else "score"
        values = [i[key] for i in items if i["criterion"] == row["metric"].removesuffix("_samples")]
        scored = [v for v in values if v is not None]
        assert row["missing"] == len(values) - len(scored)
        assert (row["score"] is None) == (not scored)
        if scored:
            assert row["score"] == pytest.approx(sum(scored) / len(scored)) and 1 <= row["score"] <= 5
    reference = table.filter(pl.col("scale") == "0-100")
    assert (reference["missing"] == 0).all() and reference["score"].is_not_null().all()
    # table numbers are the prediction files' per-item means
    for row in reference.filter(pl.col("metric") == "token_f1").iter_rows(named=True):
        folder = wd / "eval/tiny" / row["model_tag"] / row["dataset"] / "f0.k0"
        items = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        assert row["score"] == pytest.approx(sum(i["scores"]["token_f1"] for i in items) / len(items))
        judgements = (folder / "judgements.jsonl").read_text().splitlines()
        assert len(judgements) == len(items) * 2  # every item x (accuracy, completeness)
        summary = json.loads((folder / "judge.json").read_text())
        acc = table.filter(
            (pl.col("metric") == "accuracy")
            & (pl.col("model_tag") == row["model_tag"])
            & (pl.col("dataset") == row["dataset"])
        )
        assert summary["criteria"]["accuracy"]["missing"] == acc["missing"][0]
    md = (wd / "tables/rag.md").read_text()
    assert "## Retrieval" in md and "recall@2" in md and "## Judge robustness" in md
    steps = json.loads((wd / "judge/steps.json").read_text())
    assert set(steps["criteria"]) == {"accuracy", "completeness"}
    for manifest in ("rag/zoo/manifest.json", "rag/zoo/index.bm25/manifest.json", "data/rag_zoo/manifest.json"):
        assert json.loads((wd / manifest).read_text())["config_hash"]


def test_rag_rerun_is_a_no_op(rag_run):
    assert planned_jobs(rag_run, "--configfile", STUDY) == {}


def test_changing_k_reruns_from_the_dataset_not_retrieval(rag_run):
    study = variant(rag_run, "smoke_rag_k1.yaml", lambda c: c["rag"].update(k=1))
    assert planned_jobs(rag_run, "--configfile", study) == {
        "prepare_dataset": 2,
        "tokenize": 2,
        "finetune": 4,
        "evaluate": 6,
        "judge": 6,
        "aggregate": 1,
        "compute_table": 1,
        "rag_report": 1,
        "rag_plot": 1,
        "all": 1,
    }


def test_changing_the_judge_reruns_only_judging(rag_run):
    study = variant(rag_run, "smoke_rag_judge.yaml", lambda c: c["judge"].update(samples=3))
    assert planned_jobs(rag_run, "--configfile", study) == {
        "judge_steps": 1,
        "judge": 6,
        "rag_report": 1,
        "rag_plot": 1,
        "all": 1,
    }


def test_barnett2024_hpc_study_plans_without_hub_access(rag_run):
    """Two generators x 3 domains x sizes 200/500/1000, in-domain evaluation, an HTTP judge; GPT-4
    (an API model) answers on the 3 domains as the un-fine-tuned baseline."""
    jobs = planned_jobs(rag_run, "--configfile", "config/studies/barnett2024.yaml")
    finetunes = 2 * 3 * 3
    cells = 2 * (3 + 3 * 3) + 3  # per generator: the base on 3 domains + 9 fine-tunes in-domain; GPT-4 on 3
    assert jobs == {
        "fetch_asset": 1,
        "build_corpus": 3,
        "index": 3 * 2,
        "retrieve": 3 * 2,
        "prepare_dataset": 3,
        "prepare_model": 3,
        "tokenize": 2 * 3,
        "finetune": finetunes,
        "evaluate": cells,
        "judge_steps": 1,
        "judge": cells,
        "aggregate": 1,
        "compute_table": 1,
        "rag_report": 1,
        "rag_plot": 1,
        "all": 1,
    }
