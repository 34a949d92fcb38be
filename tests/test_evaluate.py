"""Evaluation cells on the tiny model: multiple-choice scoring, label scores projected in fp32
under bf16, ties, acc_norm and partial (Winogrande) scoring, predictions that carry what a
reviewer needs to re-score them with another harness, few-shot demonstrations from the pool
only, and an API model (OpenAI-compatible) as a generator against a real HTTP server."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
import torch

from ftgen.data import load_examples, prepare_dataset
from ftgen.evaluate import choose
from ftgen.generation import fp32_head, loglikelihoods
from ftgen.modeling import load_model, load_tokenizer, prepare_model
from ftgen.prompts import continuation, encode_example, encode_pair
from helpers import PP, SHARP_LABELS, eval_sentiment, eval_spec, label_requests, run_cell, write_jsonl

# ----------------------------------------------------------------------------- multiple choice
# Multiple-choice evaluation (TruthfulQA-style: each example has its own options).
MC_PP = {
    "task": "mcqa",
    "type": "multiple_choice",
    "inputs": ["question"],
    "labels": None,
    "prompts": {"0": "Q: {question}\nA:"},
    "chat_template": False,
    "max_length": 64,
    "max_new_tokens": 8,
}


def test_multiple_choice_scoring_picks_the_most_likely_option(tiny_model, mc_examples, tmp_path):
    res, preds = run_cell(tiny_model, mc_examples, eval_spec(MC_PP, ["accuracy"]), tmp_path)
    test = {r["id"]: r for r in pl.read_parquet(mc_examples).iter_rows(named=True)}
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    for p in preds[:6]:  # the scorer's log-likelihoods are those of each (prompt, option) pair alone
        ex = test[p["id"]]
        assert list(p["loglik"]) == ex["references"] and p["prediction"] in ex["references"]
        prompt = encode_example(tok, MC_PP, 0, ex, [], None, budget=64).prompt_text
        manual = loglikelihoods(
            model,
            tok.pad_token_id,
            [encode_pair(tok, MC_PP, prompt, continuation(MC_PP, o)) for o in ex["references"]],
            batch_size=1,
        )
        assert list(p["loglik"].values()) == pytest.approx(manual, abs=1e-4)
        assert p["prediction"] == max(p["loglik"], key=p["loglik"].get)
    accuracy = 100 * sum(p["prediction"] == test[p["id"]]["label"] for p in preds) / len(preds)
    assert res["scores"]["accuracy"] == pytest.approx(accuracy) and res["n"] == 30


# ----------------------------------------------------------------------------- scoring precision
# Scored positions in fp32 under bf16, tie counting, acc_norm, partial scoring, and predictions
# that carry what a reviewer needs to re-score them with another harness.
def test_bf16_label_scores_are_projected_in_fp32(sharp_model):
    tok, model = load_tokenizer(sharp_model), load_model(sharp_model)
    _, per_prompt = label_requests(tok)
    flat = [pair for pairs in per_prompt for pair in pairs]
    fp32 = loglikelihoods(model, tok.pad_token_id, flat, batch_size=8, bf16=False)
    bf16 = loglikelihoods(model, tok.pad_token_id, flat, batch_size=8, bf16=True)
    k = len(SHARP_LABELS)
    rows = [bf16[i : i + k] for i in range(0, len(bf16), k)]
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


def test_ties_are_counted_and_go_to_the_first_option():
    assert choose([-1.0, -0.5, -0.5]) == (1, True)
    assert choose([-0.2, -0.5, -0.1]) == (2, False)


def test_predictions_record_prompt_group_and_tie_and_acc_norm(tiny_model, mc_examples, tmp_path):
    res, preds = run_cell(tiny_model, mc_examples, eval_spec(MC_PP, ["accuracy"]), tmp_path)
    test = {r["id"]: r for r in pl.read_parquet(mc_examples).iter_rows(named=True)}
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    norm_hits = 0
    for p in preds:
        ex = test[p["id"]]
        assert p["group"] == ex["group"] and p["prompt"] == MC_PP["prompts"]["0"].format(**ex["inputs"])
        assert isinstance(p["tie"], bool)
        # another harness re-scores from the recorded prompt alone
        again = loglikelihoods(
            model,
            tok.pad_token_id,
            [encode_pair(tok, MC_PP, p["prompt"], continuation(MC_PP, o)) for o in ex["references"]],
        )
        assert again == pytest.approx(list(p["loglik"].values()), abs=1e-4)
        norm = max(ex["references"], key=lambda o: p["loglik"][o] / len(o))  # lm-eval's acc_norm
        assert p["scores"]["acc_norm"] == 100.0 * (norm == ex["label"])
        norm_hits += norm == ex["label"]
    assert res["scores"]["acc_norm"] == pytest.approx(100 * norm_hits / len(preds))
    assert res["ties"] == sum(p["tie"] for p in preds)


def test_winogrande_partial_scoring(tiny_model, tmp_path):
    """lm-eval's Winogrande: the sentence up to the blank with each option is the context; the
    rest of the sentence is the continuation scored for both."""
    rows = [
        {
            "id": f"w{i}",
            "sentence": f"The cup {i} fell on the plate because _ was heavy.",
            "option1": "cup",
            "option2": "plate",
            "answer": str(1 + i % 2),
        }
        for i in range(6)
    ]
    path = write_jsonl(tmp_path / "wino.jsonl", rows)
    params = {
        "name": "wino",
        "task": "wino",
        "task_type": "multiple_choice",
        "inputs": ["sentence"],
        "labels": None,
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"sentence": "sentence"},
            "id": "id",
            "options": ["option1", "option2"],
            "label": "answer",
            "label_index": 1,
        },
        "split": {"seed": 0, "test": 6, "dev": 0, "fewshot": 0, "train": 0},
        "asset": None,
    }
    prepare_dataset(
        spec=params,
        examples=str(tmp_path / "w.parquet"),
        card=str(tmp_path / "c.json"),
        manifest=str(tmp_path / "m.json"),
    )
    pp = {
        "task": "wino",
        "type": "multiple_choice",
        "scoring": "partial",
        "inputs": ["sentence"],
        "labels": None,
        "prompts": {"0": "{sentence}"},
        "chat_template": False,
        "max_length": 64,
        "max_new_tokens": 4,
    }
    _, preds = run_cell(tiny_model, tmp_path / "w.parquet", eval_spec(pp, ["accuracy"]), tmp_path)
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    for p in preds:
        assert "acc_norm" not in p["scores"] and p["prompt"].endswith("because ")
        sentence = next(r["sentence"] for r in rows if r["id"] == p["id"])
        head, tail = sentence.split("_")
        manual = loglikelihoods(
            model, tok.pad_token_id, [encode_pair(tok, pp, head + o, " " + tail.strip()) for o in p["references"]]
        )
        assert list(p["loglik"].values()) == pytest.approx(manual, abs=1e-4)


# ----------------------------------------------------------------------------- few-shot demonstrations
def test_few_shot_eval_uses_the_pool_never_test(tiny_model, examples, tmp_path):
    res, _ = eval_sentiment(tiny_model, tiny_model, examples, tmp_path, "fs")
    pool = [r["id"] for r in load_examples(examples, "fewshot")]
    assert res["demonstrations"] == pool[:2]
    assert not {r["id"] for r in load_examples(examples, "test")} & set(res["demonstrations"])


# ----------------------------------------------------------------------------- an API generator
# An API model (OpenAI-compatible) as an un-fine-tuned RAG generator, against a real HTTP server
# on 127.0.0.1: answers cached like judgements, 5xx retried, the key never written
# (a study that lists it scores it only as itself: test_study.py).
KEY = "sk-api-generator-test-never-write-me"
API_PP = {
    "task": "rag_qa",
    "type": "generation",
    "inputs": ["context", "question"],
    "labels": None,
    "prompts": {"0": "### Context:\n{context}\n### Question:\n{question}\n### Answer:"},
    "chat_template": True,
    "max_length": 512,
    "max_new_tokens": 24,
}


@pytest.fixture
def server():
    seen, auth, lock = Counter(), set(), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            city = prompt.rsplit("capital of ", 1)[1].split("?")[0]
            with lock:
                seen[prompt] += 1
                auth.add(self.headers.get("Authorization"))
                first = seen[prompt] == 1
            if city == "Flakia" and first:
                status, payload = 500, {"error": {"message": "boom"}}
            else:  # honours the stop sequence the client sends, as the API does
                text = f"{city}ville\n\nAnd some chatter."
                stop = (body.get("stop") or [None])[0]
                text = text.split(stop)[0] if stop else text
                status, payload = (
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                    },
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen, auth
    httpd.shutdown()
    httpd.server_close()


def test_api_model_answers_are_cached_retried_and_scored(server, tmp_path, monkeypatch):
    url, seen, auth = server
    monkeypatch.setenv("GEN_KEY", KEY)
    cities = ["Norland", "Flakia", "Osterby", "Quen"]
    rows = [
        {
            "id": f"q{i}",
            "context": f"The capital of {c} is {c}ville.",
            "question": f"What is the capital of {c}?",
            "answer": f"{c}ville",
        }
        for i, c in enumerate(cities)
    ]
    src = write_jsonl(tmp_path / "qa.jsonl", rows)
    examples = tmp_path / "examples.parquet"
    prepare_dataset(
        spec={
            "name": "qa",
            "task": "rag_qa",
            "task_type": "generation",
            "inputs": ["context", "question"],
            "labels": None,
            "source": {
                "adapter": "jsonl",
                "path": str(src),
                "references": "answer",
                "columns": {"context": "context", "question": "question"},
            },
            "split": {"seed": 0, "test": 4, "dev": 0, "fewshot": 0, "train": 0},
            "asset": None,
        },
        examples=str(examples),
        card=str(tmp_path / "card.json"),
        manifest=str(tmp_path / "m.json"),
    )
    spec = {"source": "api", "name": "gpt-4", "base_url": url, "api_key_env": "GEN_KEY"}
    model = tmp_path / "models" / "gpt4"
    prepare_model(spec=spec, model=str(model), log=lambda *_: None)
    api = {
        **{k: v for k, v in spec.items() if k != "source"},
        "timeout_s": 5,
        "max_retries": 2,
        "backoff_s": 0.0,
        "cache_dir": str(tmp_path / "cache"),
    }
    params = eval_spec(API_PP, ["exact_match", "token_f1"], api=api)
    out = tmp_path / "eval"
    res, preds = run_cell(model, examples, params, out, cell=("gpt4", "base", "qa", "0", "0"))
    assert {p["prediction"] for p in preds} == {f"{c}ville" for c in cities}  # cut at the blank line
    assert res["scores"] == {"exact_match": 100.0, "token_f1": 100.0}
    assert all(p["prompt"].endswith("### Answer:") for p in preds)
    assert sum(seen.values()) == 5 and auth == {f"Bearer {KEY}"}  # one 500 retried
    # a rerun asks nothing: every answer comes from the cache
    run_cell(model, examples, params, out, "p2", cell=("gpt4", "base", "qa", "0", "0"))
    assert sum(seen.values()) == 5 and open(out / "p2.jsonl").read() == open(out / "p.jsonl").read()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(KEY in p.read_text(errors="ignore") for p in written)


# ----------------------------------------------------------------------------- compute record
def test_cells_record_the_tokens_they_run_and_their_utilization(tiny_model, examples, tmp_path):
    """scores.json carries the tokens scored (counted independently here), tokens/s, and MFU from
    the FLOPs the forward passes ran (ftgen.compute.forward_flops; checked against torch's flop
    counter in test_compute.py)."""
    from ftgen.compute import forward_flops, model_shape

    tok = load_tokenizer(tiny_model)
    shape = model_shape(json.loads((tiny_model / "config.json").read_text()))
    prompts = [
        encode_example(tok, PP, 0, ex, [], None, budget=PP["max_length"]).prompt_ids
        for ex in load_examples(examples, "test")
    ]
    res, _ = run_cell(tiny_model, examples, eval_spec(PP, ["accuracy"]), tmp_path, "cls")
    comp = res["compute"]
    # each context once, then every option's tokens after its first (a label is a few tokens)
    options = sum(len(tok(" " + label, add_special_tokens=False)["input_ids"]) + 1 for label in PP["labels"])
    assert sum(map(len, prompts)) < comp["scored_tokens"] <= sum(map(len, prompts)) + len(prompts) * options
    assert comp["scored_tokens"] / comp["tokens_per_s"] == pytest.approx(res["wall_time_s"], abs=0.006)  # rounded
    flops = forward_flops(shape, comp["forward_tokens"], comp["head_positions"], sum(map(len, prompts)) / len(prompts))
    assert comp["flops_per_token"] == pytest.approx(flops / comp["scored_tokens"], rel=1e-3)
    assert comp["forward_tokens"] <= comp["scored_tokens"] and comp["head_positions"] >= len(prompts)
    assert 0 < comp["mfu"] < 1 and comp["device"] and comp["achieved_tflops"] > 0

    gen = {**PP, "type": "generation", "labels": None, "max_new_tokens": 5}
    res, _ = run_cell(tiny_model, examples, eval_spec(gen, ["rougeL"]), tmp_path, "gen")
    comp = res["compute"]
    budget = PP["max_length"] - gen["max_new_tokens"]
    encoded = [encode_example(tok, gen, 0, ex, [], None, budget=budget) for ex in load_examples(examples, "test")]
    assert comp["scored_tokens"] == sum(len(e.prompt_ids) for e in encoded)
    assert 0 < comp["generated_tokens"] <= len(encoded) * gen["max_new_tokens"]
    # one position's logits per decoded token (+ 1 in the shared prompt prefix's own pass)
    assert comp["generated_tokens"] <= comp["head_positions"] <= comp["generated_tokens"] + 1
    tokens = comp["scored_tokens"] + comp["generated_tokens"]
    assert comp["forward_tokens"] <= tokens - len(encoded)  # a row's last token is never fed back
    flops = forward_flops(shape, comp["forward_tokens"], comp["head_positions"], comp["scored_tokens"] / len(encoded))
    assert comp["flops_per_token"] == pytest.approx(flops / tokens, rel=1e-3)
