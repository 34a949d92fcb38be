"""The RAG report: passages resampled together, SEs, floored and adjusted p-values."""

import json
import math

import numpy as np
import polars as pl
import pytest

from ftgen import stats
from ftgen.report.rag import rag_report
from helpers import table_outputs

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
    (folder / "judge.json").write_text(
        json.dumps(
            {
                "cell": {"model": "m", "dataset": "qa", "model_tag": tag},
                "judge": "j",
                "counts": counts,
                "criteria": {"accuracy": {"sample_sd_mean": 0.0, "krippendorff_alpha": 1.0}},
            }
        )
    )
    return str(folder / "judge.json")


def rag_study(root, groups):
    n = PASSAGES * PER
    passage = np.arange(n) // PER
    base_em = [100.0 * (i % 2) for i in range(n)]  # half right in every passage
    # fine-tunes: whole passages right or wrong
    cells = [
        judged_cell(root, "base", base_em, [2.0] * n, groups),
        judged_cell(root, "qa.sft.f0.n100.s0", [100.0 * (p % 3 != 0) for p in passage], [5.0] * n, groups),
        judged_cell(
            root, "qa.sft.f0.n200.s0", [100.0 * (p % 4 != 0) for p in passage], [4.0 + (p % 2) for p in passage], groups
        ),
    ]
    recall = root / "recall.json"
    recall.write_text(
        json.dumps({"corpus": "qa", "retriever": "bm25", "passages": PASSAGES, "questions": n, "recall@1": 50.0})
    )
    params = {
        "study": "t",
        "criteria": ["accuracy"],
        "score": "logprobs",
        "samples": 0,
        "bootstrap": 1000,
        "bootstrap_seed": 0,
        "datasets": {"qa": "qa"},
    }
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
