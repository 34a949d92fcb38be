"""Model, tokenization, training and evaluation on the tiny random-init Llama (real HF + peft)."""

import json
import sys

import pytest
import torch
from conftest import sentiment_rows, write_jsonl
from safetensors.torch import load_file

from ftgen.data import prepare_dataset
from ftgen.evaluate import evaluate_cell
from ftgen.generation import greedy_generate, loglikelihoods
from ftgen.metrics import score
from ftgen.modeling import bf16_supported, load_model, load_tokenizer
from ftgen.prompts import encode_example, encode_pair
from ftgen.data import load_examples
from ftgen.demos import DemoSelector, VariantError
from ftgen.tokenized import tokenize_dataset
from ftgen.train import finetune

PP = {"task": "sentiment", "type": "classification", "inputs": ["text"], "labels": ["negative", "positive"],
      "prompts": {"0": "### Input:\n{text}\n### Sentiment:", "1": "Text: {text}\nSentiment?"},
      "chat_template": False, "max_length": 64, "max_new_tokens": 8}
RECIPE = {"method": "lora", "learning_rate": 0.01, "epochs": 1, "per_device_batch_size": 4, "bf16": False,
          "save_steps": 2, "logging_steps": 1, "size": 12, "seed": 7,
          "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ex")
    path = write_jsonl(tmp / "sent.jsonl", sentiment_rows(48))
    params = {"name": "sent", "task": "sentiment", "task_type": "classification", "inputs": ["text"],
              "labels": ["negative", "positive"],
              "source": {"adapter": "jsonl", "path": str(path), "columns": {"text": "text"}, "label": "label", "group": "doc"},
              "split": {"seed": 0, "test": 8, "dev": 4, "fewshot": 4, "train": 16}}
    prepare_dataset(spec=params, examples=str(tmp / "examples.parquet"), card=str(tmp / "card.json"),
                    manifest=str(tmp / "m.json"))
    return tmp / "examples.parquet"


def test_tiny_model_artifact(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["kind"] == "model" and manifest["n_params"] > 10_000 and manifest["code_revision"]
    tok = load_tokenizer(tiny_model)
    assert tok.eos_token and tok.pad_token and tok.padding_side == "left"
    assert isinstance(bf16_supported("cpu"), bool)


def test_encoding_truncates_input_never_target(tiny_model):
    tok = load_tokenizer(tiny_model)
    long = {"inputs": {"text": "word " * 200}, "label": "positive", "references": ["positive"]}
    enc = encode_example(tok, PP, 0, long, [], "positive", budget=40)
    assert enc.truncated and len(enc.prompt_ids) + len(enc.target_ids) <= 40
    assert tok.decode(enc.target_ids).strip() == "positive"
    assert tok.decode(enc.prompt_ids).rstrip().endswith("### Sentiment:")
    ctx, cont = encode_pair(tok, PP, "### Sentiment:", " positive")
    assert tok.decode(ctx + cont) == "### Sentiment: positive"


def test_encoding_shortens_long_demonstrations_not_their_answers(tiny_model):
    tok = load_tokenizer(tiny_model)
    demo = {"inputs": {"text": "demo " * 300}, "label": "negative", "references": ["negative"]}
    example = {"inputs": {"text": "query " * 100}, "label": "positive", "references": ["positive"]}
    enc = encode_example(tok, PP, 0, example, [demo], "positive", budget=80)
    text = tok.decode(enc.prompt_ids)
    assert enc.truncated and len(enc.prompt_ids) + len(enc.target_ids) <= 80
    # both inputs were cut to a common cap; the demo's answer and the prompt's start survive
    assert text.startswith("### Input:\ndemo") and "### Sentiment: negative\n\n### Input:\nquery" in text
    assert text.count("demo") >= 3 and text.count("query") >= 3
    assert tok.decode(enc.target_ids).strip() == "positive"

def test_tokenized_dataset_masks_prompt_and_appends_eos(tiny_model, examples, tmp_path):
    out = tmp_path / "tok"
    stats = tokenize_dataset(model=str(tiny_model), examples=str(examples),
                             spec={"prompt": PP, "variant": "sft", "format": 0}, tokenized=str(out))
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "dataset"))
    tok = load_tokenizer(tiny_model)
    row = ds["train"][0]
    target = [t for t in row["labels"] if t != -100]
    assert target[-1] == tok.eos_token_id and row["input_ids"][-len(target):] == target
    assert row["labels"][0] == -100
    assert stats["train"]["examples"] == 16 and stats["dev"]["examples"] == 4
    assert (out / "manifest.json").exists()


def test_demo_selectors():
    pool = [{"id": f"p{i}", "inputs": {"text": f"pool sentence {i}"}} for i in range(4)]
    train = [{"id": f"t{i}", "inputs": {"text": t}} for i, t in
             enumerate(["the cat sat on the mat", "dogs run in parks", "a cat on a mat again", "stock prices fell"])]
    assert DemoSelector("sft", pool, train)(train[0]) == []
    assert [d["id"] for d in DemoSelector("fticl-fixed-k2", pool, train)(train[0])] == ["p0", "p1"]
    rnd = DemoSelector("fticl-random-k3", pool, train, seed=5)
    for ex in train:
        picked = [d["id"] for d in rnd(ex)]
        assert len(set(picked)) == 3 and ex["id"] not in picked
        assert picked == [d["id"] for d in DemoSelector("fticl-random-k3", pool, train, seed=5)(ex)]
    near = DemoSelector("fticl-retrieved-k1", pool, train)(train[0])
    assert [d["id"] for d in near] == ["t2"]  # most similar, never itself
    with pytest.raises(VariantError):
        DemoSelector("fticl-fixed-k9", pool, train)
    with pytest.raises(VariantError):
        DemoSelector("dpo", pool, train)


@pytest.mark.parametrize("variant", ["fticl-fixed-k2", "fticl-random-k2", "fticl-retrieved-k2"])
def test_fticl_prompts_have_k_demos_never_test_or_self(tiny_model, examples, tmp_path, variant):
    out = tmp_path / "tok"
    tokenize_dataset(model=str(tiny_model), examples=str(examples), tokenized=str(out),
                     spec={"prompt": {**PP, "max_length": 256}, "variant": variant, "format": 0, "demo_seed": 0})
    used = json.loads((out / "demonstrations.json").read_text())
    test_ids = {r["id"] for r in load_examples(examples, "test")}
    from datasets import load_from_disk

    tok = load_tokenizer(tiny_model)
    ds = load_from_disk(str(out / "dataset"))["train"]
    for row in ds:
        assert len(used[row["id"]]) == 2 and row["id"] not in used[row["id"]]
        assert not test_ids & set(used[row["id"]])
        assert tok.decode(row["input_ids"]).count("### Input:") == 3  # 2 demonstrations + the example


def test_few_shot_eval_uses_the_pool_never_test(tiny_model, examples, tmp_path):
    res, _ = _eval(tiny_model, tiny_model, examples, tmp_path, "fs")
    pool = [r["id"] for r in load_examples(examples, "fewshot")]
    assert res["demonstrations"] == pool[:2]
    assert not {r["id"] for r in load_examples(examples, "test")} & set(res["demonstrations"])


@pytest.fixture(scope="module")
def tokenized(tiny_model, examples, tmp_path_factory):
    """The sentiment examples tokenized for SFT: shared by the DeepSpeed and resume tests."""
    out = tmp_path_factory.mktemp("tok") / "tok"
    tokenize_dataset(model=str(tiny_model), examples=str(examples), spec={"prompt": PP, "variant": "sft", "format": 0},
                     tokenized=str(out))
    return out


def finetune_cmd(tiny_model, tokenized, recipe: dict, out, procs: int = 0, threads: int = 1) -> list[str]:
    """The fine-tune step exactly as the rule runs it: through `ftgen launch`, checkpoints beside `out`."""
    return [sys.executable, "-m", "ftgen", "launch", "--procs", str(procs), "--", "finetune",
            "--model", str(tiny_model), "--tokenized", str(tokenized), "--recipe", json.dumps(recipe),
            "--finetuned", str(out), "--checkpoints", str(out.parent / f"ckpt_{out.name}"), "--threads", str(threads)]


def _train(tiny_model, examples, tmp_path, name, recipe=RECIPE):
    tok_dir = tmp_path / "tok"
    if not tok_dir.exists():
        tokenize_dataset(model=str(tiny_model), examples=str(examples),
                         spec={"prompt": PP, "variant": "sft", "format": 0}, tokenized=str(tok_dir))
    out = tmp_path / name
    finetune(model=str(tiny_model), tokenized=str(tok_dir), recipe=recipe, finetuned=str(out),
             checkpoints=str(tmp_path / f"ckpt_{name}"), threads=1)
    return out


def _eval(model_dir, tiny_model, examples, tmp_path, name):
    params = {"prompt": PP, "format": 0, "shots": 2, "metrics": ["accuracy", "macro_f1"], "batch_size": 3,
              "limit": None, "seed": 0, "bf16": False}
    res = evaluate_cell(model=str(model_dir), base=str(tiny_model), examples=str(examples), spec=params,
                        predictions=str(tmp_path / f"{name}.jsonl"), scores=str(tmp_path / f"{name}.json"),
                        cell=["tiny", name, "sent", "0", "2"])
    preds = [json.loads(line) for line in open(tmp_path / f"{name}.jsonl")]
    return res, preds


def test_same_seed_gives_identical_weights_and_scores(tiny_model, examples, tmp_path):
    a = _train(tiny_model, examples, tmp_path, "a")
    b = _train(tiny_model, examples, tmp_path, "b")
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(v.abs().sum() > 0 for k, v in wa.items() if "lora_B" in k), "LoRA did not train"
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["tokens_per_s"] > 0 and manifest["input_sha256"]["tokenized"]
    ra, pa = _eval(a, tiny_model, examples, tmp_path, "ea")
    rb, pb = _eval(b, tiny_model, examples, tmp_path, "eb")
    assert ra["scores"] == rb["scores"] and pa == pb
    # scores.json agrees with the per-example predictions it was computed from
    acc = 100 * sum(p["prediction"] == p["references"][0] for p in pa) / len(pa)
    assert ra["scores"]["accuracy"] == pytest.approx(acc)
    assert ra["demonstrations"] and ra["n"] == 8
    # a different seed trains different weights
    c = _train(tiny_model, examples, tmp_path, "c", {**RECIPE, "seed": 8})
    wc = load_file(c / "adapter_model.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_from_checkpoint_after_kill(tiny_model, examples, tmp_path):
    """A run that left checkpoints (killed job) resumes from the last one on rerun."""
    recipe = {**RECIPE, "epochs": 2}
    out = _train(tiny_model, examples, tmp_path, "r", recipe)
    import shutil

    shutil.rmtree(out)  # the declared output is gone, checkpoints remain
    again = _train(tiny_model, examples, tmp_path, "r", recipe)
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["resumed_from"] and "checkpoint-" in manifest["resumed_from"]
    # a changed recipe must not resume from the old checkpoints
    other = _train(tiny_model, examples, tmp_path, "r", {**recipe, "learning_rate": 0.02})
    assert json.loads((other / "manifest.json").read_text())["resumed_from"] is None


def test_batched_scoring_and_generation_match_unbatched(tiny_model):
    model, tok = load_model(tiny_model), load_tokenizer(tiny_model)
    texts = ["the movie was good", "a", "the food service people were bad and the story was terrible"]
    reqs = [encode_pair(tok, PP, t, " positive") for t in texts]
    batched = loglikelihoods(model, tok.pad_token_id, reqs, batch_size=3)
    single = [loglikelihoods(model, tok.pad_token_id, [r], batch_size=1)[0] for r in reqs]
    assert batched == pytest.approx(single, abs=1e-4)
    # and it is the real log-likelihood: compare with a plain forward pass
    ctx, cont = reqs[0]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]
    manual = sum(float(logits[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert batched[0] == pytest.approx(manual, abs=1e-4)
    prompts = [tok(t)["input_ids"] for t in texts]
    gb = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    gs = [greedy_generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert gb == gs


def test_metrics_known_values():
    corpus, per = score(["rougeL", "bleu"], ["where is the key kept", "who"], [["Where is the key kept?"], ["what is it"]])
    assert per[0]["rougeL"] == pytest.approx(100.0) and per[1]["rougeL"] == 0.0
    assert corpus["rougeL"] == pytest.approx(50.0)
    assert 0 < corpus["bleu"] < 100
    corpus, _ = score(["accuracy", "macro_f1"], ["a", "a", "b", "b"], [["a"], ["b"], ["b"], ["b"]], labels=["a", "b"])
    assert corpus["accuracy"] == 75.0
    assert corpus["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)


def test_chat_template_wraps_prompt(tiny_model):
    tok = load_tokenizer(tiny_model)
    pp = {**PP, "chat_template": True}
    enc = encode_example(tok, pp, 0, {"inputs": {"text": "ok"}, "label": "positive", "references": ["positive"]},
                         [], "positive", budget=64)
    text = tok.decode(enc.prompt_ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


def test_local_model_source_is_materialised(tiny_model, tmp_path):
    from ftgen.modeling import prepare_model

    out = tmp_path / "local"
    prepare_model(spec={"source": "local", "path": str(tiny_model)}, model=str(out), log=lambda *_: None)
    a, b = load_model(tiny_model), load_model(out)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)
    assert json.loads((out / "manifest.json").read_text())["params"]["source"] == "local"


def test_option_scoring_with_shared_context_matches_full_scoring(tiny_model):
    from ftgen.generation import option_loglikelihoods

    model, tok = load_model(tiny_model), load_tokenizer(tiny_model)
    texts = ["the movie was good", "a", "the food service people were bad and the story was terrible", "no"]
    labels = [" positive", " negative", " neutral entailment contradiction"]
    contexts, options, flat = [], [], []
    for t in texts:
        pairs = [encode_pair(tok, PP, t, lab) for lab in labels]
        assert all(p[0] == pairs[0][0] for p in pairs)
        contexts.append(pairs[0][0])
        options.append([p[1] for p in pairs])
        flat += pairs
    shared = option_loglikelihoods(model, tok.pad_token_id, contexts, options, batch_size=3)
    full = loglikelihoods(model, tok.pad_token_id, flat, batch_size=5)
    assert [x for row in shared for x in row] == pytest.approx(full, abs=1e-4)
