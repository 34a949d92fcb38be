"""Transfer table logic without Snakemake: relations, deltas, CIs, base matching."""

import json

import polars as pl
import pytest

from ftgen.aggregate import aggregate, relation
from ftgen.metrics import score
from ftgen.plots import PLOTS, make_plots

PARAMS = {"study": "t", "datasets": {"a1": {"task": "A"}, "a2": {"task": "A"}, "b1": {"task": "B"}},
          "primary_metric": {"A": "accuracy", "B": "rougeL"}, "labels": {"a1": ["x", "y"], "a2": ["x", "y"], "b1": None},
          "bootstrap": 300, "bootstrap_seed": 0}


def write_cell(tmp_path, tag, dataset, preds, golds, metrics):
    folder = tmp_path / tag / dataset
    folder.mkdir(parents=True, exist_ok=True)
    refs = [[g] for g in golds]
    corpus, per = score(metrics, preds, refs, labels=["x", "y"])
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, (p, r, s) in enumerate(zip(preds, refs, per)):
            fh.write(json.dumps({"id": f"{i:03d}", "prediction": p, "references": r, "scores": s}) + "\n")
    (folder / "scores.json").write_text(json.dumps({
        "cell": {"model_tag": tag, "dataset": dataset, "format": 0, "shots": 0}, "scores": corpus, "n": len(preds)}))
    return str(folder / "scores.json"), corpus


def test_relation():
    assert relation("a1", "A", "a1", "A") == "in-domain"
    assert relation("a1", "A", "a2", "A") == "cross-domain"
    assert relation("a1", "A", "b1", "B") == "cross-task"


def test_transfer_table_with_cis_and_seeds(tmp_path):
    gold = ["x", "y"] * 20
    clf = ["accuracy", "macro_f1"]
    paths, expect = [], {}
    paths.append(write_cell(tmp_path, "base", "a1", ["x"] * 40, gold, clf)[0])
    paths.append(write_cell(tmp_path, "base", "a2", ["y"] * 40, gold, clf)[0])
    paths.append(write_cell(tmp_path, "base", "b1", ["where is it"] * 4, ["where is the key"] * 4, ["rougeL", "bleu"])[0])
    for seed, flip in ((0, 10), (1, 14)):
        tag = f"a1.sft.f0.n100.s{seed}"
        preds = gold[:flip] + ["x"] * (40 - flip)
        p, expect[seed] = write_cell(tmp_path, tag, "a1", preds, gold, clf)
        paths.append(p)
        paths.append(write_cell(tmp_path, tag, "a2", ["y"] * 40, gold, clf)[0])
        paths.append(write_cell(tmp_path, tag, "b1", ["where is the key"] * 4, ["where is the key"] * 4, ["rougeL", "bleu"])[0])
    out = {k: str(tmp_path / f"transfer.{k}") for k in ("parquet", "csv", "md")}
    table = aggregate(paths, PARAMS, out["parquet"], out["csv"], out["md"], str(tmp_path / "m.json"))
    assert table.height == 6 and set(table["seeds"]) == {"0,1"}
    row = table.filter((pl.col("eval_dataset") == "a1") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert row["finetuned"] == pytest.approx((expect[0]["accuracy"] + expect[1]["accuracy"]) / 2)
    assert row["base"] == pytest.approx(50.0) and row["delta"] == pytest.approx(row["finetuned"] - 50.0)
    assert row["finetuned_lo"] < row["finetuned"] < row["finetuned_hi"] and row["delta_lo"] <= row["delta"] <= row["delta_hi"]
    assert row["relation"] == "in-domain" and 0 <= row["p_value"] <= 1
    same = table.filter((pl.col("eval_dataset") == "a2") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert same["delta"] == 0 and same["p_value"] == 1.0 and same["relation"] == "cross-domain"
    f1 = table.filter((pl.col("eval_dataset") == "a1") & (pl.col("metric") == "macro_f1")).row(0, named=True)
    assert f1["finetuned"] == pytest.approx((expect[0]["macro_f1"] + expect[1]["macro_f1"]) / 2) and not f1["primary"]
    bleu = table.filter(pl.col("metric") == "bleu").row(0, named=True)
    assert bleu["finetuned"] == pytest.approx(100.0) and bleu["relation"] == "cross-task"
    md = open(out["md"]).read()
    assert md.count("\n| a1 |") == 3 and " [" in md
    make_plots(out["parquet"], 0, 0, {n: (str(tmp_path / f"{n}.png"), str(tmp_path / f"{n}.pdf")) for n in PLOTS})
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 and (tmp_path / f"{n}.pdf").exists() for n in PLOTS)


def test_missing_base_is_an_error(tmp_path):
    paths = [write_cell(tmp_path, "a1.sft.f0.n100.s0", "a1", ["x"], ["x"], ["accuracy"])[0]]
    with pytest.raises(ValueError, match="no base score"):
        aggregate(paths, PARAMS, *(str(tmp_path / f"x.{k}") for k in ("parquet", "csv", "md", "json")))
