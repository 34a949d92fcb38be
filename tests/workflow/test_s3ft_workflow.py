"""The S3FT DAG through the Snakemake CLI on the smoke S3FT study (tiny model, hand-made math,
code and multiple-choice data), in a private copy of the repo."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from helpers import planned_jobs, run_in_copy

STUDY = "config/studies/smoke-s3ft.yaml"
R = "results/smoke_s3ft"


@pytest.fixture(scope="module")
def s3ft_run(tmp_path_factory):
    return run_in_copy(tmp_path_factory, STUDY)


def test_s3ft_dag_writes_targets_with_provenance_and_the_table(s3ft_run):
    wd = s3ft_run / R
    for path in ("tables/s3ft.csv", "tables/s3ft.md", "plots/s3ft.png", "plots/s3ft.pdf", "tables/transfer.csv"):
        assert (wd / path).stat().st_size > 0
    for dataset, metric in (("math", "math_match"), ("code", "pass_at_1")):
        folder = wd / "s3ft/tiny" / dataset
        answers = [json.loads(line) for line in (folder / "self.jsonl").read_text().splitlines()]
        train = pl.read_parquet(wd / "data" / dataset / "examples.parquet").filter(pl.col("split") == "train")
        assert sorted(a["id"] for a in answers) == sorted(train["id"])  # the base model answered every training prompt
        assert all(metric in a["scores"] for a in answers)  # ... and each answer was judged
        card = json.loads((folder / "card.json").read_text())
        assert card["self"] + card["paraphrase"] + card["gold"] == card["examples"] == train.height
        rejected = sum(a["scores"][metric] < 100 for a in answers)
        paraphrases = (folder / "paraphrases.jsonl").read_text().splitlines()
        assert len(paraphrases) == rejected == card["paraphrase"] + card["gold"]
        s3ft = pl.read_parquet(folder / "examples.parquet")
        s3ft_train = s3ft.filter(pl.col("split") == "train")
        assert s3ft_train["id"].to_list() == train["id"].to_list()
        assert set(s3ft_train["provenance"]) <= {"self", "paraphrase", "gold"}
        assert s3ft.filter(pl.col("split") == "test").equals(
            pl.read_parquet(wd / "data" / dataset / "examples.parquet")
            .filter(pl.col("split") == "test")
            .with_columns(pl.col("references").alias("gold_references"), pl.lit(None, pl.String).alias("provenance"))
            .select(s3ft.columns)
        )  # test rows untouched
    table = pl.read_csv(wd / "tables/s3ft.csv")
    assert set(table["variant"]) == {"sft", "s3ft"} and set(table["kind"]) == {"in-domain", "general"}


def test_sft_and_s3ft_train_on_the_same_examples(s3ft_run):
    wd = s3ft_run / R
    for dataset in ("math", "code"):
        ids = {}
        for variant in ("sft", "s3ft"):
            demos = json.loads((wd / "tokenized/tiny" / dataset / f"{variant}.f0" / "demonstrations.json").read_text())
            ids[variant] = sorted(demos)
        assert ids["sft"] == ids["s3ft"] and len(ids["sft"]) == 12
        card = json.loads((wd / "s3ft/tiny" / dataset / "card.json").read_text())
        if card["gold"] == card["examples"]:  # the tiny model is never right: identical targets, identical weights
            a = load_file(wd / f"finetuned/tiny/{dataset}.sft.f0.n12.s0/adapter_model.safetensors")
            b = load_file(wd / f"finetuned/tiny/{dataset}.s3ft.f0.n12.s0/adapter_model.safetensors")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_s3ft_rerun_is_a_no_op(s3ft_run):
    assert planned_jobs(s3ft_run, "--configfile", STUDY) == {}


def test_gupta2025_studies_plan_without_hub_access(s3ft_run):
    """GPU: 3 training sets x (SFT, S3FT), every model on 8 general benchmarks; CPU: 5."""
    jobs = planned_jobs(s3ft_run, "--configfile", "config/studies/gupta2025.yaml")
    assert jobs == {
        "fetch_asset": 1,
        "prepare_dataset": 11,
        "prepare_model": 1,
        "self_answers": 3,
        "s3ft_dataset": 3,
        "tokenize": 6,
        "finetune": 6,
        "evaluate": 11 + 6 * (1 + 8),
        "aggregate": 1,
        "compute_table": 1,
        "s3ft_report": 1,
        "all": 1,
    }
    jobs = planned_jobs(s3ft_run, "--configfile", "config/studies/gupta2025-cpu.yaml")
    assert jobs["finetune"] == 6 and jobs["evaluate"] == 8 + 6 * (1 + 5) and jobs["fetch_asset"] == 4
