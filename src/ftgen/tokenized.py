"""Tokenize rule: examples -> a saved HF dataset of (input_ids, labels) for training.

Loss is on target tokens only (prompt positions are -100), EOS is appended to the target, and
inputs are shortened before targets when the pair exceeds the model's max length. The training
variant decides the demonstrations prepended to each example (see `demos.py`); which ones each
example got is recorded in demonstrations.json.
"""

from __future__ import annotations

import statistics

from .artifacts import atomic_dir, manifest, write_json
from .data import load_examples
from .demos import DemoSelector
from .modeling import load_tokenizer
from .prompts import encode_example, target_of
from .step import Input, Json, Output


def encode_for_training(tok, prompt_spec: dict, fmt: int, example: dict, demos: list[dict]) -> dict:
    enc = encode_example(
        tok, prompt_spec, fmt, example, demos, target_of(prompt_spec, example), budget=prompt_spec["max_length"] - 1
    )
    target = enc.target_ids + [tok.eos_token_id]
    return {
        "input_ids": enc.prompt_ids + target,
        "labels": [-100] * len(enc.prompt_ids) + target,
        "id": example["id"],
        "truncated": enc.truncated,
    }


def tokenize_dataset(*, model: Input, examples: Input, spec: Json, tokenized: Output, log=print) -> dict:
    from datasets import Dataset, DatasetDict

    tok = load_tokenizer(model)
    prompt_spec, fmt = spec["prompt"], spec["format"]
    train = load_examples(examples, "train")
    select = DemoSelector(
        spec["variant"], load_examples(examples, "fewshot"), train, spec.get("demo_seed")
    )  # params carry it for fticl variants only
    splits, stats, used = {}, {}, {}
    for split in ("train", "dev"):
        rows = []
        for ex in train if split == "train" else load_examples(examples, split):
            demos = select(ex)
            used[ex["id"]] = [d["id"] for d in demos]
            rows.append(encode_for_training(tok, prompt_spec, fmt, ex, demos))
        if rows:  # an empty dev split is simply absent
            splits[split] = Dataset.from_list(rows)
        lengths = [len(r["input_ids"]) for r in rows]
        targets = [sum(t != -100 for t in r["labels"]) for r in rows]
        stats[split] = {
            "examples": len(rows),
            "tokens": sum(lengths),
            "target_tokens": sum(targets),
            "mean_length": statistics.fmean(lengths) if lengths else 0,
            "max_length": max(lengths, default=0),
            "truncated": sum(r["truncated"] for r in rows),
        }
        log(f"{split}: {stats[split]}")
    with atomic_dir(tokenized) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", stats)
        write_json(tmp / "manifest.json", manifest("tokenized", spec, inputs={"examples": examples}, stats=stats))
        write_json(tmp / "demonstrations.json", used)
    return stats
