"""Corpus adapters (JSONL, allenai/qasper's hub schema): errors name file and line, sampling keeps
answerable questions."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ftgen.data import DataError
from helpers import build_toy_corpus, write_toy_corpus


def test_corpus_errors_name_file_and_line(tmp_path):
    params = write_toy_corpus(tmp_path)
    with open(params["source"]["questions"], "a") as fh:
        fh.write(json.dumps({"id": "bad", "question": "?", "answers": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"questions\.jsonl:9: field 'gold' missing"):
        build_toy_corpus(tmp_path, params)
    params = write_toy_corpus(tmp_path)
    with open(params["source"]["questions"], "a") as fh:
        fh.write(json.dumps({"id": "ghost", "question": "?", "answers": ["x"], "gold": "nowhere"}) + "\n")
    with pytest.raises(DataError, match="gold passage id.*not in the corpus"):
        build_toy_corpus(tmp_path, params)
    assert not (tmp_path / "rag" / "corpus.parquet").exists()  # nothing half-written


def test_corpus_sampling_keeps_answerable_questions(tmp_path):
    params = {**write_toy_corpus(tmp_path, questions_per_passage=2), "max_passages": 4, "max_questions": 5, "seed": 1}
    corpus, qa = build_toy_corpus(tmp_path, params)
    kept = set(pl.read_parquet(corpus)["id"])
    questions = pl.read_parquet(qa)
    assert len(kept) == 4 and questions.height == 5
    assert all(set(g) <= kept for g in questions["gold"].to_list())


def test_qasper_adapter_reads_the_hub_schema(tmp_path):
    """A paper in allenai/qasper's nested schema (saved with `datasets`, read back like the hub)."""
    import datasets

    p1, p2, p3 = (
        "We train a BiLSTM tagger on CoNLL data.",
        "The tagger reaches 91.2 F1 on the test set.",
        "Future work includes other languages.",
    )

    def ann(free="", spans=(), yes_no=None, unanswerable=False, evidence=()):
        return {
            "unanswerable": unanswerable,
            "extractive_spans": list(spans),
            "yes_no": yes_no,
            "free_form_answer": free,
            "evidence": list(evidence),
            "highlighted_evidence": list(evidence),
        }

    paper = {
        "id": "1909.00001",
        "title": "A Tagger",
        "abstract": "We tag.",
        "full_text": {"section_name": ["Method", "Results"], "paragraphs": [[p1], [p2, p3]]},
        "qas": {
            "question": ["What F1 does it reach?", "Is it multilingual?", "What is the loss?"],
            "question_id": ["q1", "q2", "q3"],
            "answers": [
                {
                    "answer": [ann(spans=["91.2 F1"], evidence=[p2]), ann(free="91.2", evidence=[p2])],
                    "annotation_id": ["a", "b"],
                    "worker_id": ["w", "v"],
                },
                {
                    "answer": [ann(yes_no=False, evidence=[p3, "FLOAT SELECTED: Table 1"])],
                    "annotation_id": ["c"],
                    "worker_id": ["w"],
                },
                {"answer": [ann(unanswerable=True)], "annotation_id": ["d"], "worker_id": ["w"]},
            ],
        },
    }
    folder = tmp_path / "qasper"
    datasets.Dataset.from_list([paper]).save_to_disk(str(folder))
    params = {"name": "qasper", "source": {"adapter": "qasper", "name": str(folder), "split": "train"}, "asset": None}
    corpus, qa = build_toy_corpus(tmp_path, params)
    passages = pl.read_parquet(corpus)
    questions = {r["id"]: r for r in pl.read_parquet(qa).iter_rows(named=True)}
    assert passages.height == 3 and passages["title"].to_list().count("A Tagger - Results") == 2
    text_of = dict(zip(passages["id"], passages["text"]))
    assert set(questions) == {"q1", "q2"}  # q3 is unanswerable: skipped
    assert questions["q1"]["answers"] == ["91.2 F1", "91.2"] and [text_of[g] for g in questions["q1"]["gold"]] == [p2]
    assert questions["q2"]["answers"] == ["No"] and [text_of[g] for g in questions["q2"]["gold"]] == [p3]
    assert json.loads((tmp_path / "rag" / "card.json").read_text())["skipped_rows"] == 1
