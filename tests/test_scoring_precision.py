"""Scored positions in fp32 under bf16, tie counting, acc_norm, partial scoring, and predictions
that carry what a reviewer needs to re-score them with another harness."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from conftest import write_jsonl
from test_multiple_choice import PP as MC_PP
from test_multiple_choice import mc_examples, mc_rows  # noqa: F401  (fixture)

from ftgen.data import prepare_dataset
from ftgen.evaluate import choose, evaluate_cell
from ftgen.generation import fp32_head, loglikelihoods, option_loglikelihoods
from ftgen.modeling import load_model, load_tokenizer
from ftgen.prompts import continuation, encode_pair

LABELS = ["no", "bad"]  # one token each in the tiny model's vocabulary


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory):
    """The tiny model with logits scaled into the 8-40 range of a trained LLM's, where a bf16 logit
    moves in steps of 1/16-1/4, and the two labels' output rows nearly equal: their scores differ
    by a few thousandths, as two plausible labels' do. Scored from bf16 logits, they tie."""
    model = load_model(tiny_model)
    tok = load_tokenizer(tiny_model)
    a, b = (tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in LABELS)
    assert len(a) == len(b) == 1
    torch.manual_seed(0)
    with torch.no_grad():
        w = model.get_output_embeddings().weight
        w.mul_(60.0)
        w[b[0]] = w[a[0]] + 0.002 * torch.randn_like(w[a[0]])
    out = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(out)
    load_tokenizer(tiny_model).save_pretrained(out)
    return out


def _requests(tok, n=48):
    pp = {"chat_template": False}
    prompts = [f"### Input:\nthe film {i} was {'good' if i % 2 else 'bad'} {i % 7}\n### Sentiment:" for i in range(n)]
    return prompts, [[encode_pair(tok, pp, p, continuation(pp, lab)) for lab in LABELS] for p in prompts]


def test_bf16_label_scores_are_projected_in_fp32(sharp_model):
    tok, model = load_tokenizer(sharp_model), load_model(sharp_model)
    _, per_prompt = _requests(tok)
    flat = [pair for pairs in per_prompt for pair in pairs]
    fp32 = loglikelihoods(model, tok.pad_token_id, flat, batch_size=8, bf16=False)
    bf16 = loglikelihoods(model, tok.pad_token_id, flat, batch_size=8, bf16=True)
    k = len(LABELS)
    rows = [bf16[i:i + k] for i in range(0, len(bf16), k)]
    assert sum(choose(r)[1] for r in rows) == 0, "bf16 label scores tie: made from bf16 logits"
    gaps = [r[0] - r[1] for r in rows]
    ref = [fp32[i] - fp32[i + 1] for i in range(0, len(fp32), k)]
    assert max(abs(g) for g in ref) < 0.5  # the labels are close: the case that ties
    assert gaps == pytest.approx(ref, abs=0.005)  # bf16 body, fp32 projection: close to fp32
    # the contrast: the same model's bf16 logits (the old path) do tie on this data
    ids = torch.tensor([flat[0][0] + flat[0][1]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(input_ids=ids).logits.dtype == torch.bfloat16
        with fp32_head(model):
            assert model(input_ids=ids).logits.dtype == torch.float32
    assert model.get_output_embeddings().forward.__func__ is torch.nn.Linear.forward  # restored


def test_option_scoring_in_bf16_has_no_quantised_gaps(sharp_model):
    tok, model = load_tokenizer(sharp_model), load_model(sharp_model)
    prompts, per_prompt = _requests(tok)
    ctx = [pairs[0][0] for pairs in per_prompt]
    opts = [[cont for _, cont in pairs] for pairs in per_prompt]
    rows = option_loglikelihoods(model, tok.pad_token_id, ctx, opts, batch_size=8, bf16=True)
    gaps = [abs(r[0] - r[1]) for r in rows]
    on_grid = sum(abs(g * 16 - round(g * 16)) < 1e-6 for g in gaps)
    assert on_grid <= 2, f"{on_grid} of {len(gaps)} gaps are multiples of 1/16"


def test_ties_are_counted_and_go_to_the_first_option():
    assert choose([-1.0, -0.5, -0.5]) == (1, True)
    assert choose([-0.2, -0.5, -0.1]) == (2, False)


def test_predictions_record_prompt_group_and_tie_and_acc_norm(tiny_model, mc_examples, tmp_path):  # noqa: F811
    params = {"prompt": MC_PP, "format": 0, "shots": 0, "metrics": ["accuracy"], "batch_size": 4, "limit": None,
              "seed": 0, "bf16": False}
    res = evaluate_cell(model=str(tiny_model), base=str(tiny_model), examples=str(mc_examples), spec=params,
                        predictions=str(tmp_path / "p.jsonl"), scores=str(tmp_path / "s.json"),
                        cell=["tiny", "base", "mc", "0", "0"])
    preds = [json.loads(line) for line in open(tmp_path / "p.jsonl")]
    test = {r["id"]: r for r in pl.read_parquet(mc_examples).iter_rows(named=True)}
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    norm_hits = 0
    for p in preds:
        ex = test[p["id"]]
        assert p["group"] == ex["group"] and p["prompt"] == MC_PP["prompts"]["0"].format(**ex["inputs"])
        assert isinstance(p["tie"], bool)
        # another harness re-scores from the recorded prompt alone
        again = loglikelihoods(model, tok.pad_token_id,
                               [encode_pair(tok, MC_PP, p["prompt"], continuation(MC_PP, o)) for o in ex["references"]])
        assert again == pytest.approx(list(p["loglik"].values()), abs=1e-4)
        norm = max(ex["references"], key=lambda o: p["loglik"][o] / len(o))  # lm-eval's acc_norm
        assert p["scores"]["acc_norm"] == 100.0 * (norm == ex["label"])
        norm_hits += norm == ex["label"]
    assert res["scores"]["acc_norm"] == pytest.approx(100 * norm_hits / len(preds))
    assert res["ties"] == sum(p["tie"] for p in preds)


def test_winogrande_partial_scoring(tiny_model, tmp_path):
    """lm-eval's Winogrande: the sentence up to the blank with each option is the context; the
    rest of the sentence is the continuation scored for both."""
    rows = [{"id": f"w{i}", "sentence": f"The cup {i} fell on the plate because _ was heavy.", "option1": "cup",
             "option2": "plate", "answer": str(1 + i % 2)} for i in range(6)]
    path = write_jsonl(tmp_path / "wino.jsonl", rows)
    params = {"name": "wino", "task": "wino", "task_type": "multiple_choice", "inputs": ["sentence"], "labels": None,
              "source": {"adapter": "jsonl", "path": str(path), "columns": {"sentence": "sentence"}, "id": "id",
                         "options": ["option1", "option2"], "label": "answer", "label_index": 1},
              "split": {"seed": 0, "test": 6, "dev": 0, "fewshot": 0, "train": 0}, "asset": None}
    prepare_dataset(spec=params, examples=str(tmp_path / "w.parquet"), card=str(tmp_path / "c.json"),
                    manifest=str(tmp_path / "m.json"))
    pp = {"task": "wino", "type": "multiple_choice", "scoring": "partial", "inputs": ["sentence"], "labels": None,
          "prompts": {"0": "{sentence}"}, "chat_template": False, "max_length": 64, "max_new_tokens": 4}
    eval_params = {"prompt": pp, "format": 0, "shots": 0, "metrics": ["accuracy"], "batch_size": 4, "limit": None,
                   "seed": 0, "bf16": False}
    evaluate_cell(model=str(tiny_model), base=str(tiny_model), examples=str(tmp_path / "w.parquet"), spec=eval_params,
                  predictions=str(tmp_path / "p.jsonl"), scores=str(tmp_path / "s.json"),
                  cell=["tiny", "base", "wino", "0", "0"])
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    for p in map(json.loads, open(tmp_path / "p.jsonl")):
        assert "acc_norm" not in p["scores"] and p["prompt"].endswith("because ")
        sentence = next(r["sentence"] for r in rows if r["id"] == p["id"])
        head, tail = sentence.split("_")
        manual = loglikelihoods(model, tok.pad_token_id,
                                [encode_pair(tok, pp, head + o, " " + tail.strip()) for o in p["references"]])
        assert list(p["loglik"].values()) == pytest.approx(manual, abs=1e-4)
