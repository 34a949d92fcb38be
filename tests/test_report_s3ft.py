"""The S3FT report finds each eval cell's predictions by what the cell records, not by its path."""

import json
import random

import polars as pl
import pytest

from ftgen.report.s3ft import predictions_by_cell, s3ft_report
from ftgen.report.transfer import aggregate

N = 40
GOLD = ["x", "y"] * (N // 2)


def cell(folder, tag, dataset, correct, model="m"):
    """An eval cell (scores.json + predictions.jsonl) in `folder`, any folder: `correct` examples right."""
    folder.mkdir(parents=True)
    scores = [100.0 * (i < correct) for i in range(N)]
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, (g, s) in enumerate(zip(GOLD, scores)):
            pred = g if s else ("y" if g == "x" else "x")
            fh.write(json.dumps({"id": f"{i:03d}", "group": f"g{i // 4}", "prediction": pred, "references": [g],
                                 "scores": {"accuracy": s}}) + "\n")
    (folder / "scores.json").write_text(json.dumps({
        "cell": {"model": model, "model_tag": tag, "dataset": dataset, "format": 0, "shots": 0},
        "scores": {"accuracy": sum(scores) / N}, "n": N}))
    return folder / "scores.json"


def study(root):
    """t1 trained (SFT / S3FT, two seeds), g1 and g2 general; cells in numbered folders, not the pipeline's layout."""
    right = {("base", "t1"): 20, ("base", "g1"): 30, ("base", "g2"): 30}
    for variant, lost in (("sft", 12), ("s3ft", 4)):
        for seed in (0, 1):
            tag = f"t1.{variant}.f0.n100.s{seed}"
            right |= {(tag, "t1"): 36 - seed, (tag, "g1"): 30 - lost - seed, (tag, "g2"): 30 - lost // 2}
    scores = [cell(root / f"c{k}", tag, ds, n) for k, ((tag, ds), n) in enumerate(right.items())]
    spec = {"study": "t", "datasets": {d: {"task": "A"} for d in ("t1", "g1", "g2")},
            "primary_metric": {"A": "accuracy"}, "labels": {}, "bootstrap": 200, "bootstrap_seed": 0}
    transfer = {k: str(root / f"transfer.{k}") for k in ("parquet", "csv", "md")}
    aggregate(scores=[str(p) for p in scores], spec=spec, manifest=str(root / "transfer.json"), **transfer)
    (root / "card.json").write_text(json.dumps({"dataset": "t1", "self": 20, "paraphrase": 10, "gold": 10,
                                                "examples": 40}))
    return transfer["parquet"], [str(p.with_name("predictions.jsonl")) for p in scores]


def report(root, table, predictions, **spec):
    out = {k: str(root / f"s3ft.{k}") for k in ("csv", "md", "png", "pdf")}
    spec = {"study": "t", "general": ["g1", "g2"], "train_on": ["t1"], "bootstrap": 500, "bootstrap_seed": 0, **spec}
    s3ft_report(table=table, cards=[str(root / "card.json")], predictions=predictions, spec=spec, **out)
    md = (root / "s3ft.md").read_text().splitlines()
    head = next(line for line in md if line.startswith("| train_dataset"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    return {row[1]: dict(zip(cells(head), row)) for row in map(cells, md) if row[0] == "t1"}


def test_predictions_are_found_by_the_cell_they_record_in_any_order(tmp_path):
    table, predictions = study(tmp_path)
    found = predictions_by_cell(predictions)
    assert found[("m", "base", "g1", 0, 0)] == str(tmp_path / "c1" / "predictions.jsonl")
    assert len(found) == len(predictions) == 15
    rows = report(tmp_path, table, predictions)
    shuffled = predictions[:]
    random.Random(0).shuffle(shuffled)
    assert report(tmp_path, table, shuffled) == rows
    # SFT loses 12 + seed examples on g1 and 6 on g2 vs base: mean over seeds and benchmarks (2 decimals)
    assert float(rows["sft"]["mean general Δ"]) == pytest.approx(-100 * (12.5 + 6) / 2 / N, abs=0.006)
    assert float(rows["s3ft"]["mean general Δ"]) == pytest.approx(-100 * (4.5 + 2) / 2 / N, abs=0.006)
    assert rows["sft"]["mean general Δ CI"].startswith("[-")
    table_rows = pl.read_csv(tmp_path / "s3ft.csv")
    assert set(table_rows["kind"]) == {"in-domain", "general"} and table_rows.height == 6


def test_the_bootstrap_count_and_seed_come_from_the_spec(tmp_path):
    table, predictions = study(tmp_path)
    se = {(b, s): report(tmp_path, table, predictions, bootstrap=b, bootstrap_seed=s)["sft"]["mean general Δ SE"]
          for b, s in ((500, 0), (500, 1), (2000, 0))}
    assert se[500, 0] == report(tmp_path, table, predictions, bootstrap=500, bootstrap_seed=0)["sft"][
        "mean general Δ SE"]  # same spec, same numbers
    assert len(set(se.values())) == 3


def test_a_cell_missing_from_the_inputs_is_named(tmp_path):
    table, predictions = study(tmp_path)
    kept = [p for p in predictions if not p.endswith("/c1/predictions.jsonl")]  # base on g1
    with pytest.raises(ValueError, match=r"no predictions.jsonl among the inputs for base of m on g1 format 0 shots 0"):
        report(tmp_path, table, kept)
    with pytest.raises(ValueError, match="both the predictions of"):
        report(tmp_path, table, predictions + predictions[:1])
