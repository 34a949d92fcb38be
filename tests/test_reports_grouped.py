"""RAG and S3FT reports: groups resampled together, SEs, floored and adjusted p-values."""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_aggregate import table_outputs, write_cell

from ftgen import stats
from ftgen.report.rag import rag_report
from ftgen.report.s3ft import s3ft_report
from ftgen.report.transfer import aggregate

PASSAGES, PER = 12, 4  # 12 gold passages, 4 questions about each


def judged_cell(root, tag, em, acc, groups=True):
    """A judged RAG cell: predictions (EM, token F1, gold passage) and 1-5 accuracy judgements."""
    folder = root / tag
    folder.mkdir(parents=True)
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, v in enumerate(em):
            row = {"id": f"q{i:02d}", "scores": {"exact_match": v, "token_f1": v}}
            if groups:
                row["group"] = f"passage-{i // PER}"
            fh.write(json.dumps(row) + "\n")
    with open(folder / "judgements.jsonl", "w") as fh:
        for i, v in enumerate(acc):
            fh.write(json.dumps({"id": f"q{i:02d}", "criterion": "accuracy", "score": v, "sample_mean": v}) + "\n")
    counts = {"requests": 1, "cache_hits": 0, "transport_retries": 0, "parse_retries": 0, "unavailable": 0}
    (folder / "judge.json").write_text(json.dumps({
        "cell": {"model": "m", "dataset": "qa", "model_tag": tag}, "judge": "j", "counts": counts,
        "criteria": {"accuracy": {"sample_sd_mean": 0.0, "krippendorff_alpha": 1.0}}}))
    return str(folder / "judge.json")


def rag_study(root, groups):
    n = PASSAGES * PER
    passage = np.arange(n) // PER
    base_em = [100.0 * (i % 2) for i in range(n)]  # half right in every passage
    # fine-tunes: whole passages right or wrong
    cells = [judged_cell(root, "base", base_em, [2.0] * n, groups),
             judged_cell(root, "qa.sft.f0.n100.s0", [100.0 * (p % 3 != 0) for p in passage],
                         [5.0] * n, groups),
             judged_cell(root, "qa.sft.f0.n200.s0", [100.0 * (p % 4 != 0) for p in passage],
                         [4.0 + (p % 2) for p in passage], groups)]
    recall = root / "recall.json"
    recall.write_text(json.dumps({"corpus": "qa", "retriever": "bm25", "passages": PASSAGES, "questions": n,
                                  "recall@1": 50.0}))
    params = {"study": "t", "criteria": ["accuracy"], "score": "logprobs", "samples": 0, "bootstrap": 1000,
              "bootstrap_seed": 0, "datasets": {"qa": "qa"}}
    out = table_outputs(root, "rag")
    return rag_report(judged=cells, recall=[str(recall)], spec=params, **out), open(out["md"]).read()


def test_rag_table_resamples_passages(tmp_path):
    table, md = rag_study(tmp_path / "g", groups=True)
    plain, plain_md = rag_study(tmp_path / "p", groups=False)
    def pick(t, tag, metric):
        return t.filter((pl.col("model_tag") == tag) & (pl.col("metric") == metric)).row(0, named=True)

    em = pick(table, "qa.sft.f0.n100.s0", "exact_match")
    em0 = pick(plain, "qa.sft.f0.n100.s0", "exact_match")
    assert (em["resampling_unit"], em["n_groups"]) == ("group (n_groups=12)", 12)
    assert (em0["resampling_unit"], em0["n_groups"]) == ("example", 48)
    means = np.array([100.0 * (p % 3 != 0) for p in range(PASSAGES)])
    assert em["score_se"] == pytest.approx(means.std() / math.sqrt(PASSAGES), rel=0.1)
    assert em["score_se"] > 1.7 * em0["score_se"] and em["delta_se"] > em0["delta_se"]
    # the base gets half right in every passage: no spread between passages, so delta SE = score SE
    assert em["base_se"] == 0.0 and em["delta_se"] == pytest.approx(em["score_se"])
    # identical large gains: p at the floor 1/B, printed "< 0.001"
    acc = pick(table, "qa.sft.f0.n100.s0", "accuracy")
    assert acc["delta"] == 3.0 and acc["p_value"] == 0.001 and acc["delta_se"] == 0.0
    assert "< 0.001" in md and "qa: group (n_groups=12)" in md and "qa: example" in plain_md
    # family: the fine-tuned rows of one metric; base rows are no test
    for metric in ("exact_match", "accuracy"):
        ft = table.filter((pl.col("metric") == metric) & (pl.col("model_tag") != "base"))
        assert ft.height == 2
        assert ft["p_holm"].to_list() == pytest.approx(list(stats.holm(ft["p_value"].to_list())))
        assert ft["p_bh"].to_list() == pytest.approx(list(stats.bh(ft["p_value"].to_list())))
    assert table.filter(pl.col("model_tag") == "base")["p_holm"].null_count() == 3
    assert "family = the fine-tuned rows of one metric" in md and " ± " in md


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
    params = {"study": "t", "datasets": {d: {"task": "A"} for d in ("t1", "g1", "g2")},
              "primary_metric": {"A": "accuracy"}, "labels": {}, "bootstrap": 1000, "bootstrap_seed": 0}
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
