"""The S3FT report: each eval cell's predictions found by what the cell records, not by its path;
groups resampled within each benchmark, SEs, floored and adjusted p-values."""

import json
import math
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ftgen import stats
from ftgen.report.s3ft import predictions_by_cell, s3ft_report
from ftgen.report.transfer import aggregate
from helpers import table_outputs, write_cell

N = 40
GOLD = ["x", "y"] * (N // 2)


def cell(folder, tag, dataset, correct, model="m"):
    """An eval cell (scores.json + predictions.jsonl) in `folder`, any folder: `correct` examples right."""
    folder.mkdir(parents=True)
    scores = [100.0 * (i < correct) for i in range(N)]
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, (g, s) in enumerate(zip(GOLD, scores)):
            pred = g if s else ("y" if g == "x" else "x")
            fh.write(
                json.dumps(
                    {
                        "id": f"{i:03d}",
                        "group": f"g{i // 4}",
                        "prediction": pred,
                        "references": [g],
                        "scores": {"accuracy": s},
                    }
                )
                + "\n"
            )
    (folder / "scores.json").write_text(
        json.dumps(
            {
                "cell": {"model": model, "model_tag": tag, "dataset": dataset, "format": 0, "shots": 0},
                "scores": {"accuracy": sum(scores) / N},
                "n": N,
            }
        )
    )
    return folder / "scores.json"


def study(root):
    """t1 trained (SFT / S3FT, two seeds), g1 and g2 general; cells in numbered folders, not the pipeline's layout."""
    right = {("base", "t1"): 20, ("base", "g1"): 30, ("base", "g2"): 30}
    for variant, lost in (("sft", 12), ("s3ft", 4)):
        for seed in (0, 1):
            tag = f"t1.{variant}.f0.n100.s{seed}"
            right |= {(tag, "t1"): 36 - seed, (tag, "g1"): 30 - lost - seed, (tag, "g2"): 30 - lost // 2}
    scores = [cell(root / f"c{k}", tag, ds, n) for k, ((tag, ds), n) in enumerate(right.items())]
    spec = {
        "study": "t",
        "datasets": {d: {"task": "A"} for d in ("t1", "g1", "g2")},
        "primary_metric": {"A": "accuracy"},
        "labels": {},
        "bootstrap": 200,
        "bootstrap_seed": 0,
    }
    transfer = {k: str(root / f"transfer.{k}") for k in ("parquet", "csv", "md")}
    aggregate(scores=[str(p) for p in scores], spec=spec, manifest=str(root / "transfer.json"), **transfer)
    (root / "card.json").write_text(
        json.dumps({"dataset": "t1", "self": 20, "paraphrase": 10, "gold": 10, "examples": 40})
    )
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
    se = {
        (b, s): report(tmp_path, table, predictions, bootstrap=b, bootstrap_seed=s)["sft"]["mean general Δ SE"]
        for b, s in ((500, 0), (500, 1), (2000, 0))
    }
    assert (
        se[500, 0] == report(tmp_path, table, predictions, bootstrap=500, bootstrap_seed=0)["sft"]["mean general Δ SE"]
    )  # same spec, same numbers
    assert len(set(se.values())) == 3


def test_a_cell_missing_from_the_inputs_is_named(tmp_path):
    table, predictions = study(tmp_path)
    kept = [p for p in predictions if not p.endswith("/c1/predictions.jsonl")]  # base on g1
    with pytest.raises(ValueError, match=r"no predictions.jsonl among the inputs for base of m on g1 format 0 shots 0"):
        report(tmp_path, table, kept)
    with pytest.raises(ValueError, match="both the predictions of"):
        report(tmp_path, table, predictions + predictions[:1])


# ----------------------------------------------------------------------------- groups resampled within each benchmark
def eval_cell(eval_dir, tag, dataset, preds, golds, groups):
    """A cell in the pipeline's layout (<tag>/<dataset>/f0.k0/): what the S3FT report reads."""
    return write_cell(eval_dir, tag, dataset, preds, golds, ["accuracy"], groups, subdir="f0.k0")[0]


def s3ft_study(root, grouped):
    """t1 (train) and two general benchmarks of 10 contexts x 6 questions; the fine-tunes keep or
    lose whole contexts on the general benchmarks and get t1 all right."""
    n = 60
    gold = ["x", "y"] * (n // 2)
    groups = [f"ctx{k // 6}" for k in range(n)] if grouped else None
    flip = {"x": "y", "y": "x"}
    paths = [eval_cell(root, "base", d, gold if d != "t1" else ["x"] * n, gold, None) for d in ("t1", "g1", "g2")]
    for variant, lost in (("sft", (0, 1, 2, 3)), ("s3ft", (0,))):
        tag = f"t1.{variant}.f0.n100.s0"
        paths.append(eval_cell(root, tag, "t1", gold, gold, groups))
        for d in ("g1", "g2"):
            preds = [flip[g] if k // 6 in lost else g for k, g in enumerate(gold)]
            paths.append(eval_cell(root, tag, d, preds, gold, groups))
    params = {
        "study": "t",
        "datasets": {d: {"task": "A"} for d in ("t1", "g1", "g2")},
        "primary_metric": {"A": "accuracy"},
        "labels": {},
        "bootstrap": 1000,
        "bootstrap_seed": 0,
    }
    transfer = table_outputs(root)
    aggregate(scores=paths, spec=params, **transfer)
    cards = root / "card.json"
    cards.write_text(json.dumps({"dataset": "t1", "self": 30, "paraphrase": 20, "gold": 10, "examples": 60}))
    out = {k: str(root / f"s3ft.{k}") for k in ("csv", "md", "png", "pdf")}
    predictions = [str(Path(p).with_name("predictions.jsonl")) for p in paths]
    spec = {"study": "t", "general": ["g1", "g2"], "train_on": ["t1"], "bootstrap": 2000, "bootstrap_seed": 0}
    table = s3ft_report(table=transfer["parquet"], cards=[str(cards)], predictions=predictions, spec=spec, **out)
    return table, open(out["md"]).read()


def mean_general(md, variant):
    """The summary row of one variant, column -> cell text."""
    lines = md.splitlines()
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    head = next(line for line in lines if line.startswith("| train_dataset"))
    return dict(zip(cells(head), cells(next(line for line in lines if line.startswith(f"| t1 | {variant} |")))))


def test_s3ft_report_resamples_groups_within_each_benchmark(tmp_path):
    table, md = s3ft_study(tmp_path / "g", grouped=True)
    plain, plain_md = s3ft_study(tmp_path / "p", grouped=False)
    sft, sft0 = mean_general(md, "sft"), mean_general(plain_md, "sft")
    assert float(sft["mean general Δ"]) == float(sft0["mean general Δ"]) == pytest.approx(-40.0)
    # per benchmark the delta is -100 on 4 of 10 contexts, 0 elsewhere: SE of a mean of 10 contexts,
    # two benchmarks averaged
    closed = np.array([-100.0] * 4 + [0.0] * 6).std() / math.sqrt(10) / math.sqrt(2)
    assert float(sft["mean general Δ SE"]) == pytest.approx(closed, rel=0.12)
    assert float(sft["mean general Δ SE"]) > 2 * float(sft0["mean general Δ SE"])
    gen = table.filter(pl.col("kind") == "general")
    assert set(gen["resampling_unit"]) == {"group (n_groups=10)"} and set(gen["n_groups"]) == {10}
    assert "g1: group (n_groups=10)" in md and "g1: example" in plain_md
    # in-domain: all right vs half right on every example: p at the floor 1/B
    ind = table.filter(pl.col("kind") == "in-domain")
    assert ind["p_value"].to_list() == [0.001, 0.001]
    assert sft["in-domain p"] == "< 0.001" and " ± " in sft["in-domain Δ"]
    # family: every row of this table
    assert table["p_holm"].to_list() == pytest.approx(list(stats.holm(table["p_value"].to_list())))
    assert table["p_bh"].to_list() == pytest.approx(list(stats.bh(table["p_value"].to_list())))
    assert "family = all rows of this table" in md
