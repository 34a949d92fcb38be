"""Multiple-choice evaluation (TruthfulQA-style: each example has its own options) and the
evaluation-only splits of the generalization benchmarks."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest
from conftest import write_jsonl

from ftgen.data import DataError, prepare_dataset
from ftgen.evaluate import evaluate_cell
from ftgen.generation import loglikelihoods
from ftgen.modeling import load_model, load_tokenizer
from ftgen.prompts import continuation, encode_example, encode_pair

PP = {"task": "mcqa", "type": "multiple_choice", "inputs": ["question"], "labels": None,
      "prompts": {"0": "Q: {question}\nA:"}, "chat_template": False, "max_length": 64, "max_new_tokens": 8}


def mc_rows(n: int = 30) -> list[dict]:
    """The correct option always first in the file (as in BIG-bench's truthful_qa); 2-5 options."""
    return [{"id": f"m{i}", "subject": f"s{i % 3}", "question": f"what is item {i}?",
             "options": [f"item {i} is true"] + [f"item {i} is wrong {j}" for j in range(1 + i % 4)]}
            for i in range(n)]


def mc_params(path, split=None, **source) -> dict:
    return {"name": "mc", "task": "mcqa", "task_type": "multiple_choice", "inputs": ["question"], "labels": None,
            "source": {"adapter": "jsonl", "path": str(path), "columns": {"question": "question"},
                       "options": "options", "label": "gold", "id": "id", "group": "subject", **source},
            "split": split or {"seed": 0, "test": 30, "dev": 0, "fewshot": 0, "train": 0}, "asset": None}


@pytest.fixture
def mc_examples(tmp_path):
    rows = [{**r, "gold": r["options"][0]} for r in mc_rows()]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    out = tmp_path / "mc.parquet"
    prepare_dataset(spec=mc_params(path), examples=str(out), card=str(tmp_path / "card.json"),
                    manifest=str(tmp_path / "m.json"))
    return out


def test_options_are_shuffled_per_example_with_a_fixed_seed(mc_examples, tmp_path):
    df = pl.read_parquet(mc_examples)
    positions = Counter(r["references"].index(r["label"]) for r in df.iter_rows(named=True))
    assert len(positions) > 2 and positions[0] < df.height  # not always first any more
    assert all(r["label"] in r["references"] and len(set(r["references"])) == len(r["references"])
               for r in df.iter_rows(named=True))
    again = tmp_path / "again.parquet"
    prepare_dataset(spec=mc_params(tmp_path / "mc.jsonl"), examples=str(again), card=str(tmp_path / "c2.json"),
                    manifest=str(tmp_path / "m2.json"))
    assert pl.read_parquet(again).equals(df)  # same seed, same order


def test_a_correct_option_that_is_not_an_option_names_file_and_line(tmp_path):
    rows = [{**r, "gold": r["options"][0]} for r in mc_rows(5)]
    rows[3]["gold"] = "something else"
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad\.jsonl:4: the correct option 'something else' is not among"):
        prepare_dataset(spec=mc_params(path), examples=str(tmp_path / "x.parquet"), card=str(tmp_path / "c.json"),
                        manifest=str(tmp_path / "m.json"))
    assert not (tmp_path / "x.parquet").exists()


def test_test_per_group_samples_every_group(tmp_path):
    rows = [{**r, "gold": r["options"][0]} for r in mc_rows()]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    out = tmp_path / "pg.parquet"
    prepare_dataset(spec=mc_params(path, split={"seed": 1, "test_per_group": 4}), examples=str(out),
                    card=str(tmp_path / "c.json"), manifest=str(tmp_path / "m.json"))
    df = pl.read_parquet(out)
    assert dict(Counter(df["group"])) == {"s0": 4, "s1": 4, "s2": 4} and set(df["split"]) == {"test"}


def test_multiple_choice_scoring_picks_the_most_likely_option(tiny_model, mc_examples, tmp_path):
    params = {"prompt": PP, "format": 0, "shots": 0, "metrics": ["accuracy"], "batch_size": 4, "limit": None,
              "seed": 0, "bf16": False}
    res = evaluate_cell(model=str(tiny_model), base=str(tiny_model), examples=str(mc_examples), spec=params,
                        predictions=str(tmp_path / "p.jsonl"), scores=str(tmp_path / "s.json"),
                        cell=["tiny", "base", "mc", "0", "0"])
    preds = [json.loads(line) for line in open(tmp_path / "p.jsonl")]
    test = {r["id"]: r for r in pl.read_parquet(mc_examples).iter_rows(named=True)}
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    for p in preds[:6]:  # the scorer's log-likelihoods are those of each (prompt, option) pair alone
        ex = test[p["id"]]
        assert list(p["loglik"]) == ex["references"] and p["prediction"] in ex["references"]
        prompt = encode_example(tok, PP, 0, ex, [], None, budget=64).prompt_text
        manual = loglikelihoods(model, tok.pad_token_id, [encode_pair(tok, PP, prompt, continuation(PP, o))
                                                          for o in ex["references"]], batch_size=1)
        assert list(p["loglik"].values()) == pytest.approx(manual, abs=1e-4)
        assert p["prediction"] == max(p["loglik"], key=p["loglik"].get)
    accuracy = 100 * sum(p["prediction"] == test[p["id"]]["label"] for p in preds) / len(preds)
    assert res["scores"]["accuracy"] == pytest.approx(accuracy) and res["n"] == 30


@pytest.mark.parametrize("row,source,correct", [
    # ARC: options in a nested struct, the answer key names one of the options' own keys
    ({"id": "a1", "question": "q?", "choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]}, "answerKey": "C"},
     {"options": "choices.text", "label": "answerKey", "label_index": 0, "label_keys": "choices.label"}, "z"),
    # HellaSwag: a 0-based index (as a string) into a list of endings
    ({"id": "h1", "question": "q?", "endings": ["e0", "e1", "e2", "e3"], "label": "2"},
     {"options": "endings", "label": "label", "label_index": 0}, "e2"),
    # Winogrande: one column per option, a 1-based answer
    ({"id": "w1", "question": "The _ fell.", "option1": "cup", "option2": "plate", "answer": "2"},
     {"options": ["option1", "option2"], "label": "answer", "label_index": 1}, "plate"),
])
def test_hub_multiple_choice_layouts(tmp_path, row, source, correct):
    path = write_jsonl(tmp_path / "hub.jsonl", [row])
    params = mc_params(path, split={"seed": 0, "test": 1, "dev": 0, "fewshot": 0, "train": 0})
    params["source"] = {"adapter": "jsonl", "path": str(path), "columns": {"question": "question"}, "id": "id",
                        "shuffle_options": False, **source}
    out = tmp_path / "hub.parquet"
    prepare_dataset(spec=params, examples=str(out), card=str(tmp_path / "c.json"), manifest=str(tmp_path / "m.json"))
    got = pl.read_parquet(out).row(0, named=True)
    assert got["label"] == correct and correct in got["references"]
