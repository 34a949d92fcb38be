"""Transfer table logic without Snakemake: relations, deltas, CIs, base matching."""

import json

import numpy as np
import polars as pl
import pytest

from ftgen import stats
from ftgen.report.plots import PLOTS, make_plots
from ftgen.report.transfer import aggregate, relation
from helpers import table_outputs, write_cell

PARAMS = {
    "study": "t",
    "datasets": {"a1": {"task": "A"}, "a2": {"task": "A"}, "b1": {"task": "B"}},
    "primary_metric": {"A": "accuracy", "B": "rougeL"},
    "labels": {"a1": ["x", "y"], "a2": ["x", "y"], "b1": None},
    "bootstrap": 300,
    "bootstrap_seed": 0,
}


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
    gen = ["rougeL", "bleu"]
    paths.append(write_cell(tmp_path, "base", "b1", ["where is it"] * 4, ["where is the key"] * 4, gen)[0])
    for seed, flip in ((0, 10), (1, 14)):
        tag = f"a1.sft.f0.n100.s{seed}"
        preds = gold[:flip] + ["x"] * (40 - flip)
        p, expect[seed] = write_cell(tmp_path, tag, "a1", preds, gold, clf)
        paths.append(p)
        paths.append(write_cell(tmp_path, tag, "a2", ["y"] * 40, gold, clf)[0])
        paths.append(write_cell(tmp_path, tag, "b1", ["where is the key"] * 4, ["where is the key"] * 4, gen)[0])
    out = table_outputs(tmp_path)
    table = aggregate(scores=paths, spec=PARAMS, **out)
    assert table.height == 6 and set(table["seeds"]) == {"0,1"}
    row = table.filter((pl.col("eval_dataset") == "a1") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert row["finetuned"] == pytest.approx((expect[0]["accuracy"] + expect[1]["accuracy"]) / 2)
    assert row["base"] == pytest.approx(50.0) and row["delta"] == pytest.approx(row["finetuned"] - 50.0)
    assert row["finetuned_lo"] < row["finetuned"] < row["finetuned_hi"]
    assert row["delta_lo"] <= row["delta"] <= row["delta_hi"]
    assert row["relation"] == "in-domain" and 0 <= row["p_value"] <= 1
    same = table.filter((pl.col("eval_dataset") == "a2") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert same["delta"] == 0 and same["p_value"] == 1.0 and same["relation"] == "cross-domain"
    f1 = table.filter((pl.col("eval_dataset") == "a1") & (pl.col("metric") == "macro_f1")).row(0, named=True)
    assert f1["finetuned"] == pytest.approx((expect[0]["macro_f1"] + expect[1]["macro_f1"]) / 2) and not f1["primary"]
    bleu = table.filter(pl.col("metric") == "bleu").row(0, named=True)
    assert bleu["finetuned"] == pytest.approx(100.0) and bleu["relation"] == "cross-task"
    md = open(out["md"]).read()
    assert md.count("\n| a1 |") == 3 and " [" in md
    make_plots(
        table=out["parquet"],
        outputs=[str(tmp_path / f"{n}.{ext}") for n in PLOTS for ext in ("png", "pdf")],
        format=0,
        shots=0,
    )
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 and (tmp_path / f"{n}.pdf").exists() for n in PLOTS)


def test_missing_base_is_an_error(tmp_path):
    paths = [write_cell(tmp_path, "a1.sft.f0.n100.s0", "a1", ["x"], ["x"], ["accuracy"])[0]]
    with pytest.raises(ValueError, match="no base score"):
        aggregate(scores=paths, spec=PARAMS, **table_outputs(tmp_path, "x"))


def grouped_study(tmp_path, groups, n_boot=300):
    """10 contexts of 8 questions; the fine-tune gets whole contexts right or wrong (6 of 10)."""
    gold = ["x", "y"] * 40
    ft = [g if k // 8 < 6 else ("y" if g == "x" else "x") for k, g in enumerate(gold)]
    clf = ["accuracy", "macro_f1"]
    paths = [
        write_cell(tmp_path, "base", "a1", ["x"] * 80, gold, clf)[0],  # predictions without groups
        write_cell(tmp_path, "a1.sft.f0.n100.s0", "a1", ft, gold, clf, groups)[0],
    ]
    out = table_outputs(tmp_path, "t")
    table = aggregate(scores=paths, spec={**PARAMS, "bootstrap": n_boot}, **out)
    return table, open(out["md"]).read()


def test_grouped_examples_are_resampled_together(tmp_path):
    contexts = [f"context {k // 8}" for k in range(80)]
    grouped, md = grouped_study(tmp_path / "g", contexts)
    plain, plain_md = grouped_study(tmp_path / "p", None)
    acc = grouped.filter(pl.col("metric") == "accuracy").row(0, named=True)
    acc0 = plain.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert (acc["resampling_unit"], acc["n_groups"], acc["n"]) == ("group (n_groups=10)", 10, 80)
    assert (acc0["resampling_unit"], acc0["n_groups"]) == ("example", 80)
    assert acc["finetuned"] == acc0["finetuned"] == pytest.approx(60.0)  # point estimates unchanged
    # 10 independent contexts, not 80 examples: SE ~ sd(context means) / sqrt(10) = 49 / sqrt(10)
    assert acc["finetuned_se"] == pytest.approx(49.0 / np.sqrt(10), rel=0.15)
    assert acc["finetuned_se"] > 2 * acc0["finetuned_se"]
    assert acc["finetuned_hi"] - acc["finetuned_lo"] > 2 * (acc0["finetuned_hi"] - acc0["finetuned_lo"])
    for row in (acc, acc0):
        for col in ("base", "finetuned", "delta"):
            assert row[f"{col}_se"] >= 0 and row[f"{col}_lo"] <= row[col] <= row[f"{col}_hi"]
    # the base gets 4 of 8 right in every context: no spread between contexts, none between examples
    assert acc["base_se"] == 0.0 and acc0["base_se"] > 4
    f1 = grouped.filter(pl.col("metric") == "macro_f1").row(0, named=True)  # corpus metric: whole contexts too
    f1_0 = plain.filter(pl.col("metric") == "macro_f1").row(0, named=True)
    assert f1["n_groups"] == 10 and f1["finetuned_se"] > 1.5 * f1_0["finetuned_se"]
    assert "a1: group (n_groups=10)" in md and "a1: example" in plain_md
    assert " ± " in md.split("|---|")[-1]  # mean ± se [lo, hi] in the table rows


def test_p_values_are_floored_and_adjusted(tmp_path):
    contexts = [f"context {k // 8}" for k in range(80)]
    gold = ["x", "y"] * 40
    clf = ["accuracy", "macro_f1"]
    paths = [write_cell(tmp_path, "base", d, ["x"] * 80, gold, clf)[0] for d in ("a1", "a2")]
    for seed in (0, 1):
        tag = f"a1.sft.f0.n100.s{seed}"
        paths.append(write_cell(tmp_path, tag, "a1", gold, gold, clf, contexts)[0])  # all right: p at the floor
        paths.append(write_cell(tmp_path, tag, "a2", gold[:6] + ["x"] * 74, gold, clf, contexts)[0])
    out = table_outputs(tmp_path, "t")
    table = aggregate(scores=paths, spec={**PARAMS, "bootstrap": 1000}, **out)
    md = open(out["md"]).read()
    top = table.filter((pl.col("eval_dataset") == "a1") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert top["delta"] == pytest.approx(50.0) and top["p_value"] == 0.001 and top["n_boot"] == 1000
    assert "| < 0.001 |" in md and 'shown as "< 0.001"' in md
    # family: the primary-metric rows of the table; each other metric on its own
    primary = table.filter("primary")
    assert primary["p_holm"].to_list() == pytest.approx(list(stats.holm(primary["p_value"].to_list())))
    assert primary["p_bh"].to_list() == pytest.approx(list(stats.bh(primary["p_value"].to_list())))
    assert primary.height == 2 and primary["p_holm"].min() == pytest.approx(0.002)
    f1 = table.filter(pl.col("metric") == "macro_f1")
    assert f1["p_holm"].to_list() == pytest.approx(list(stats.holm(f1["p_value"].to_list())))
    assert "family = all rows of the primary metric in this table (2 tests" in md
    assert all(c in md.splitlines()[4] for c in ("| p_value |", "| p_holm |", "| p_bh |"))


def test_two_base_models_are_never_pooled(tmp_path):
    """The RAG study's two generators: each fine-tune is compared with its own base, and the two
    models' fine-tunes are not averaged as if they were seeds of one."""
    gold = ["x", "y"] * 10
    paths = []
    for model, base_pred, ft_pred in (("m1", ["x"] * 20, gold), ("m2", ["y"] * 20, ["x"] * 20)):
        for tag, preds in (("base", base_pred), ("a1.sft.f0.n10.s0", ft_pred)):
            p, _ = write_cell(tmp_path / model, tag, "a1", preds, gold, ["accuracy"])
            cell = json.loads(open(p).read())
            cell["cell"]["model"] = model
            open(p, "w").write(json.dumps(cell))
            paths.append(p)
    params = {**PARAMS, "datasets": {"a1": {"task": "A"}}}
    table = aggregate(scores=paths, spec=params, **table_outputs(tmp_path))
    rows = {r["model"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"m1", "m2"} and all(r["seeds"] == "0" for r in rows.values())
    assert rows["m1"]["delta"] == pytest.approx(50.0) and rows["m2"]["delta"] == pytest.approx(0.0)
