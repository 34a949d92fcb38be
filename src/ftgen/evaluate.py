"""Evaluate rule: one (model, eval dataset, prompt format, shots) cell -> predictions + scores.

Classification compares the summed log-likelihood of each label's full verbalisation (no
hard-coded token ids, any tokenizer); generation decodes greedily in batches and cuts at the
first blank line. Demonstrations come from the eval dataset's few-shot pool, never its test split.
"""

from __future__ import annotations

import json
import time

from .artifacts import atomic_file, manifest, write_json
from .data import load_examples
from .generation import greedy_generate, loglikelihoods, option_loglikelihoods
from .metrics import score
from .modeling import default_device, load_model, load_tokenizer, resolve_bf16, set_threads
from .prompts import continuation, encode_example, encode_pair


def evaluate_cell(model_dir: str, base_dir: str, examples: str, params: dict, out_predictions: str,
                  out_scores: str, cell: dict, threads: int | None = None, log=print) -> dict:
    """`cell` names this evaluation (model tag, dataset, format, shots); it is stored in scores.json."""
    set_threads(threads)
    device = default_device()
    bf16 = resolve_bf16(params.get("bf16", "auto"), device)
    pp, fmt, shots = params["prompt"], params["format"], params["shots"]
    tok = load_tokenizer(model_dir)  # fine-tuned folders carry the tokenizer they were trained with
    model = load_model(model_dir, device=device, base_dir=base_dir)
    test = load_examples(examples, params.get("split", "test"))  # "train": S3FT's base answers
    if params.get("limit"):
        test = test[: params["limit"]]
    demos = load_examples(examples, "fewshot")[:shots]
    if len(demos) < shots:
        raise ValueError(f"{examples}: {shots} shots requested, few-shot pool has {len(demos)}")
    start = time.time()
    budget = pp["max_length"]
    if pp["type"] in ("classification", "multiple_choice"):
        # classification: the task's label set; multiple choice: each example's own options
        options = [ex["references"] if pp["type"] == "multiple_choice" else pp["labels"] for ex in test]
        room = max(len(tok(continuation(pp, o), add_special_tokens=False)["input_ids"]) for opts in options for o in opts) + 1
        all_pairs, truncated = [], 0
        for ex, opts in zip(test, options):
            enc = encode_example(tok, pp, fmt, ex, demos, None, budget=budget - room)
            truncated += enc.truncated
            pairs = [encode_pair(tok, pp, enc.prompt_text, continuation(pp, o)) for o in opts]
            all_pairs.append([(ctx[-(budget - room):], cont) for ctx, cont in pairs])
        same_context = all(ctx == ex_pairs[0][0] for ex_pairs in all_pairs for ctx, _ in ex_pairs)
        if same_context:
            # the usual case: every option continues the same context -> encode each context once
            # (examples may have different numbers of options, e.g. TruthfulQA MC1)
            rows = option_loglikelihoods(model, tok.pad_token_id, [p[0][0] for p in all_pairs],
                                         [[cont for _, cont in p] for p in all_pairs], params["batch_size"], bf16)
        else:  # an option's first token merges with the prompt's end
            flat = loglikelihoods(model, tok.pad_token_id, [pair for p in all_pairs for pair in p],
                                  params["batch_size"], bf16)
            rows, start_at = [], 0
            for opts in options:
                rows.append(flat[start_at:start_at + len(opts)])
                start_at += len(opts)
        predictions, details = [], []
        for row, opts in zip(rows, options):
            predictions.append(opts[max(range(len(opts)), key=row.__getitem__)])
            details.append({"loglik": dict(zip(opts, row))})
    else:
        encoded = [encode_example(tok, pp, fmt, ex, demos, None, budget=budget - pp["max_new_tokens"]) for ex in test]
        truncated = sum(e.truncated for e in encoded)
        predictions = greedy_generate(model, tok, [e.prompt_ids for e in encoded], pp["max_new_tokens"],
                                      params["batch_size"], bf16, stop=pp.get("stop", "\n\n"))
        details = [{} for _ in test]
    wall = time.time() - start
    # multiple choice is scored against the correct option (its references are all the options)
    refs = [[ex["label"]] if pp["type"] == "multiple_choice" else ex["references"] for ex in test]
    corpus, per = score(params["metrics"], predictions, refs, pp.get("labels"), inputs=[ex["inputs"] for ex in test])
    with atomic_file(out_predictions) as fh:
        for ex, pred, s, d in zip(test, predictions, per, details):
            fh.write(json.dumps({"id": ex["id"], "prediction": pred, "references": ex["references"],
                                 "scores": s, **d}) + "\n")
    result = {
        "cell": cell,
        "scores": corpus,
        "n": len(test),
        "truncated_prompts": truncated,
        "wall_time_s": round(wall, 2),
        "bf16": bf16,
        "demonstrations": [d["id"] for d in demos],
        # the model folder's manifest pins its weights' provenance; hashing it is cheap
        "manifest": manifest("eval", params, inputs={"examples": examples, "model_manifest": f"{model_dir}/manifest.json"},
                             seed=params.get("seed")),
    }
    write_json(out_scores, result)
    log(f"{corpus} on {len(test)} examples in {wall:.1f}s")
    return result

