"""Transfer table logic without Snakemake: relations, deltas, base matching."""

import json

import polars as pl
import pytest

from ftgen.aggregate import aggregate, relation

PARAMS = {"study": "t", "datasets": {"a1": {"task": "A"}, "a2": {"task": "A"}, "b1": {"task": "B"}},
          "primary_metric": {"A": "accuracy", "B": "rougeL"}}


def write_cell(tmp_path, tag, dataset, scores, fmt=0, shots=0):
    path = tmp_path / tag / dataset / "scores.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cell": {"model_tag": tag, "dataset": dataset, "format": fmt, "shots": shots},
                                "scores": scores, "n": 10, "manifest": {"config_hash": tag + dataset}}))
    return str(path)


def test_relation():
    assert relation("a1", "A", "a1", "A") == "in-domain"
    assert relation("a1", "A", "a2", "A") == "cross-domain"
    assert relation("a1", "A", "b1", "B") == "cross-task"


def test_transfer_table(tmp_path):
    ft = "a1.sft.f0.n100.s0"
    paths = [
        write_cell(tmp_path, "base", "a1", {"accuracy": 50.0, "macro_f1": 40.0}),
        write_cell(tmp_path, "base", "a2", {"accuracy": 60.0, "macro_f1": 55.0}),
        write_cell(tmp_path, "base", "b1", {"rougeL": 20.0}),
        write_cell(tmp_path, ft, "a1", {"accuracy": 80.0, "macro_f1": 70.0}),
        write_cell(tmp_path, ft, "a2", {"accuracy": 65.0, "macro_f1": 50.0}),
        write_cell(tmp_path, ft, "b1", {"rougeL": 12.5}),
    ]
    out = {k: str(tmp_path / f"transfer.{k}") for k in ("parquet", "csv", "md")}
    table = aggregate(paths, PARAMS, out["parquet"], out["csv"], out["md"], str(tmp_path / "m.json"))
    assert table.height == 5
    row = table.filter((pl.col("eval_dataset") == "b1")).row(0, named=True)
    assert row["relation"] == "cross-task" and row["delta"] == pytest.approx(-7.5) and row["primary"]
    row = table.filter((pl.col("eval_dataset") == "a2") & (pl.col("metric") == "macro_f1")).row(0, named=True)
    assert row["relation"] == "cross-domain" and row["delta"] == pytest.approx(-5.0) and not row["primary"]
    assert pl.read_csv(out["csv"]).height == 5
    md = open(out["md"]).read()
    assert md.count("\n| a1 |") == 3  # primary metric rows only


def test_missing_base_is_an_error(tmp_path):
    paths = [write_cell(tmp_path, "a1.sft.f0.n100.s0", "a1", {"accuracy": 80.0})]
    with pytest.raises(ValueError, match="no base score"):
        aggregate(paths, PARAMS, *(str(tmp_path / f"x.{k}") for k in ("parquet", "csv", "md", "json")))
