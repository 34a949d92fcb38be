"""Evaluate rule: one (model, eval dataset, prompt format, shots) cell -> predictions + scores.

Classification compares the summed log-likelihood of each label's full verbalisation (no
hard-coded token ids, any tokenizer); generation decodes greedily in batches and cuts at the
first blank line. Demonstrations come from the eval dataset's few-shot pool, never its test split.
"""

from __future__ import annotations

import json
import threading
import time

from .artifacts import atomic_file, folder_state, manifest, write_json
from .compute import FORWARD_FLOPS_FORMULA, device_peak, forward_flops, model_shape, utilization
from .data import load_examples
from .generation import greedy_generate, loglikelihoods, option_loglikelihoods
from .metrics import score
from .modeling import default_device, load_model, load_tokenizer, resolve_bf16, set_threads
from .prompts import continuation, encode_example, encode_pair, render_body, with_demos
from .step import EvalCell, Input, Json, Output, Threads

# the model a process has loaded: a model server (ftgen.serve) scores many cells with one load,
# several at once on CPU
_LOADED: dict[str, tuple] = {}
_LOADING = threading.Lock()


def preload(model: str, base: str, device) -> tuple:
    """(tokenizer, model) for a model folder, loaded once per process (again if a file in the
    model or base folder changed)."""
    key = json.dumps([folder_state(model), folder_state(base), str(device)])
    with _LOADING:
        if key not in _LOADED:
            _LOADED.clear()  # one model per process
            # fine-tuned folders carry the tokenizer they were trained with
            _LOADED[key] = (load_tokenizer(model), load_model(model, device=device, base_dir=base))
        return _LOADED[key]


def choose(scores: list[float]) -> tuple[int, bool]:
    """The best option and whether it tied: ties go to the first option in order (the task's
    label order, or the example's seeded option order), as lm-eval's argmax does."""
    best = max(scores)
    return scores.index(best), scores.count(best) > 1


def _option_pairs(tok, prompt_spec, fmt, test, demos, options, budget):
    """(context, option) token pairs per example: every option continues the same prompt."""
    room = 1 + max(
        len(tok(continuation(prompt_spec, o), add_special_tokens=False)["input_ids"]) for opts in options for o in opts
    )
    pairs_by_ex, prompts, truncated = [], [], 0
    for ex, opts in zip(test, options):
        enc = encode_example(tok, prompt_spec, fmt, ex, demos, None, budget=budget - room)
        truncated += enc.truncated
        prompts.append(enc.prompt_text)
        pairs = [encode_pair(tok, prompt_spec, enc.prompt_text, continuation(prompt_spec, o)) for o in opts]
        pairs_by_ex.append([(ctx[-(budget - room) :], cont) for ctx, cont in pairs])
    return pairs_by_ex, prompts, truncated


def _partial_pairs(tok, prompt_spec, fmt, test, demos, options, budget):
    """Partial scoring (Winogrande, as lm-eval scores it): the sentence up to its blank "_" with
    each option filled in is the context, the rest of the sentence is the one continuation scored.
    Plain text even for chat models: the blank's continuation must follow the sentence directly."""
    prompt_spec = {**prompt_spec, "chat_template": False}
    field = prompt_spec["inputs"][0]
    pairs_by_ex, prompts, truncated = [], [], 0
    for ex, opts in zip(test, options):
        sentence = ex["inputs"][field]
        if "_" not in sentence:
            raise ValueError(f"example {ex['id']}: partial scoring needs a blank '_' in {field!r}: {sentence!r}")
        cut = sentence.index("_")
        rest = " " + sentence[cut + 1 :].strip()
        room = len(tok(rest, add_special_tokens=False)["input_ids"]) + 1
        pairs = []
        for o in opts:
            filled = {**ex, "inputs": {**ex["inputs"], field: sentence[:cut] + o}}
            enc = encode_example(tok, prompt_spec, fmt, filled, demos, None, budget=budget - room)
            truncated += enc.truncated
            pairs.append(encode_pair(tok, prompt_spec, enc.prompt_text, rest))
        prompts.append(render_body(prompt_spec, fmt, {**ex["inputs"], field: sentence[:cut]}))
        pairs_by_ex.append(pairs)
    return pairs_by_ex, prompts, truncated


def evaluate_cell(
    *,
    model: Input,
    base: Input,
    examples: Input,
    spec: Json,
    predictions: Output,
    scores: Output,
    cell: EvalCell,
    threads: Threads = None,
    log=print,
) -> dict:
    """`cell` names this evaluation (model, tag, dataset, format, shots); it is stored in scores.json."""
    name, tag, dataset, cell_format, cell_shots = cell
    about = {"model": name, "model_tag": tag, "dataset": dataset, "format": int(cell_format), "shots": int(cell_shots)}
    set_threads(threads)
    device = default_device()
    bf16 = resolve_bf16(spec["bf16"], device)
    prompt_spec, fmt, shots = spec["prompt"], spec["format"], spec["shots"]
    api = spec.get("api")  # an API model: no weights here, answers come from its endpoint
    if api and prompt_spec["type"] != "generation":
        raise ValueError(
            f"API model {api['name']!r} can only generate: {prompt_spec['task']!r} is scored by log-likelihood"
        )
    if not api:
        tok, lm = preload(model, base, device)
    test = load_examples(examples, spec.get("split", "test"))  # "train": S3FT's base answers
    if spec.get("limit"):
        test = test[: spec["limit"]]
    demos = load_examples(examples, "fewshot")[:shots]
    if len(demos) < shots:
        raise ValueError(f"{examples}: {shots} shots requested, few-shot pool has {len(demos)}")
    start = time.time()
    budget = prompt_spec["max_length"]
    if prompt_spec["type"] in ("classification", "multiple_choice"):
        # classification: the task's label set; multiple choice: each example's own options
        options = [
            ex["references"] if prompt_spec["type"] == "multiple_choice" else prompt_spec["labels"] for ex in test
        ]
        if prompt_spec.get("scoring") == "partial":
            pairs_by_ex, prompts, truncated = _partial_pairs(tok, prompt_spec, fmt, test, demos, options, budget)
        else:
            pairs_by_ex, prompts, truncated = _option_pairs(tok, prompt_spec, fmt, test, demos, options, budget)
        same_context = all(ctx == ex_pairs[0][0] for ex_pairs in pairs_by_ex for ctx, _ in ex_pairs)
        contexts = [len(ctx) for p in pairs_by_ex for ctx, _ in (p[:1] if same_context else p)]
        # tokens the model runs: each context once (with every option's tokens after the first), or
        # every (context, option) pair in full
        counts = {"scored_tokens": sum(contexts) + sum(len(c) - same_context for p in pairs_by_ex for _, c in p)}
        ran: dict = {}  # what the forward passes ran (ftgen.generation)
        if same_context:
            # the usual case: every option continues the same context -> encode each context once
            # (examples may have different numbers of options, e.g. TruthfulQA MC1)
            rows = option_loglikelihoods(
                lm,
                tok.pad_token_id,
                [p[0][0] for p in pairs_by_ex],
                [[cont for _, cont in p] for p in pairs_by_ex],
                spec["batch_size"],
                bf16,
                counts=ran,
            )
        else:  # an option's first token merges with the prompt's end, or (partial scoring) contexts differ
            flat = loglikelihoods(
                lm, tok.pad_token_id, [pair for p in pairs_by_ex for pair in p], spec["batch_size"], bf16, counts=ran
            )
            rows, start_at = [], 0
            for opts in options:
                rows.append(flat[start_at : start_at + len(opts)])
                start_at += len(opts)
        answers, details, norm_predictions, ties = [], [], [], 0
        for row, opts in zip(rows, options):
            pick, tied = choose(row)
            ties += tied
            answers.append(opts[pick])
            # lm-eval's acc_norm: log-likelihood per character of the option string (their
            # `len(choice)`; "bytes" in their docs, the same for ASCII options)
            norm_predictions.append(opts[choose([ll / max(1, len(o)) for ll, o in zip(row, opts)])[0]])
            details.append({"loglik": dict(zip(opts, row)), "tie": tied})
    elif api:  # the prompt body is the user message; the endpoint applies its own chat template
        from .judge import api_generate

        prompts = [with_demos(prompt_spec, fmt, render_body(prompt_spec, fmt, ex["inputs"]), demos) for ex in test]
        truncated, counts, contexts = 0, None, None
        answers = api_generate(api, prompts, prompt_spec["max_new_tokens"], prompt_spec.get("stop", "\n\n"), log=log)
        details, norm_predictions, ties = [{} for _ in test], None, None
    else:
        encoded = [
            encode_example(tok, prompt_spec, fmt, ex, demos, None, budget=budget - prompt_spec["max_new_tokens"])
            for ex in test
        ]
        truncated = sum(e.truncated for e in encoded)
        prompts = [e.prompt_text for e in encoded]
        contexts = [len(e.prompt_ids) for e in encoded]
        counts, ran = {"scored_tokens": sum(contexts)}, {}
        answers = greedy_generate(
            lm,
            tok,
            [e.prompt_ids for e in encoded],
            prompt_spec["max_new_tokens"],
            spec["batch_size"],
            bf16,
            stop=prompt_spec.get("stop", "\n\n"),
            counts=ran,
        )
        counts["generated_tokens"] = ran.get("generated_tokens", 0)
        details, norm_predictions, ties = [{} for _ in test], None, None
    wall = time.time() - start
    compute = None
    if counts is not None and contexts:
        # tokens/s: the prompts' and decoded tokens; FLOPs: what the forward passes ran for them
        # (a shared prefix once, the head where logits were read; ftgen.compute.forward_flops)
        shape, tokens = model_shape(lm.config.to_dict()), sum(counts.values())
        flops = forward_flops(shape, ran["forward_tokens"], ran["head_positions"], sum(contexts) / len(contexts))
        compute = {
            **counts,
            "forward_tokens": ran["forward_tokens"],
            "head_positions": ran["head_positions"],
            **utilization(tokens, wall, flops / tokens, device_peak(device, bf16)),
            "flops_per_token_formula": FORWARD_FLOPS_FORMULA,
        }
    # multiple choice is scored against the correct option (its references are all the options)
    refs = [[ex["label"]] if prompt_spec["type"] == "multiple_choice" else ex["references"] for ex in test]
    corpus, per = score(
        spec["metrics"],
        answers,
        refs,
        prompt_spec.get("labels"),
        inputs=[ex["inputs"] for ex in test],
        options=spec.get("metric_options"),
    )
    if norm_predictions is not None and prompt_spec.get("scoring") != "partial":
        for row, pred, ref in zip(per, norm_predictions, refs):
            row["acc_norm"] = 100.0 * (pred == ref[0])
        corpus["acc_norm"] = sum(row["acc_norm"] for row in per) / max(1, len(per))
    with atomic_file(predictions) as fh:
        for ex, pred, s, d, prompt in zip(test, answers, per, details, prompts):
            # the group is the resampling unit of the bootstrap; the prompt is the exact text that
            # was scored (for partial scoring: the prompt before the blank's options)
            fh.write(
                json.dumps(
                    {
                        "id": ex["id"],
                        "group": ex.get("group") or ex["id"],
                        "prediction": pred,
                        "references": ex["references"],
                        "scores": s,
                        **d,
                        "prompt": prompt,
                    }
                )
                + "\n"
            )
    result = {
        "cell": about,
        "scores": corpus,
        "n": len(test),
        "truncated_prompts": truncated,
        # examples whose best options scored exactly the same; the first in option order wins
        **({"ties": ties} if ties is not None else {}),
        "wall_time_s": round(wall, 2),
        **({"compute": compute} if compute else {}),
        "bf16": bf16,
        "demonstrations": [d["id"] for d in demos],
        # the model folder's manifest pins its weights' provenance; hashing it is cheap
        "manifest": manifest(
            "eval",
            spec,
            inputs={"examples": examples, "model_manifest": f"{model}/manifest.json"},
            seed=spec.get("seed"),
        ),
    }
    write_json(scores, result)
    log(f"{corpus} on {len(test)} examples in {wall:.1f}s")
    return result
