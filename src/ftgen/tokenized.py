"""Tokenize rule: examples -> a saved HF dataset of (input_ids, labels) for training.

Loss is on target tokens only (prompt positions are -100), EOS is appended to the target, and
inputs are shortened before targets when the pair exceeds the model's max length. The training
variant decides the demonstrations prepended to each example (`sft`: none; `fticl-fixed-k<k>`:
the first k of the few-shot pool, identical for every example, as in Yang et al.).
"""

from __future__ import annotations

import re
import statistics

from .artifacts import atomic_dir, manifest, write_json
from .data import load_examples
from .modeling import load_tokenizer
from .prompts import encode_example, target_of

VARIANT_RE = re.compile(r"^(?P<kind>sft|fticl-fixed)(?:-k(?P<k>\d+))?$")


class VariantError(ValueError):
    pass


def demos_for_variant(variant: str, pool: list[dict]) -> list[dict]:
    m = VARIANT_RE.match(variant)
    if not m:
        raise VariantError(f"unknown training variant {variant!r} (known: sft, fticl-fixed-k<k>)")
    if m["kind"] == "sft":
        return []
    k = int(m["k"] or 0)
    if k > len(pool):
        raise VariantError(f"variant {variant!r} needs {k} demonstrations; the few-shot pool has {len(pool)}")
    return pool[:k]


def encode_for_training(tok, pp: dict, fmt: int, example: dict, demos: list[dict]) -> dict:
    enc = encode_example(tok, pp, fmt, example, demos, target_of(pp, example), budget=pp["max_length"] - 1)
    target = enc.target_ids + [tok.eos_token_id]
    return {
        "input_ids": enc.prompt_ids + target,
        "labels": [-100] * len(enc.prompt_ids) + target,
        "id": example["id"],
        "truncated": enc.truncated,
    }


def tokenize_dataset(model_dir: str, examples: str, params: dict, out_dir: str, log=print) -> dict:
    from datasets import Dataset, DatasetDict

    tok = load_tokenizer(model_dir)
    pp, fmt = params["prompt"], params["format"]
    demos = demos_for_variant(params["variant"], load_examples(examples, "fewshot"))
    splits, stats = {}, {}
    for split in ("train", "dev"):
        rows = [encode_for_training(tok, pp, fmt, ex, demos) for ex in load_examples(examples, split)]
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
    with atomic_dir(out_dir) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", stats)
        write_json(tmp / "manifest.json", manifest("tokenized", params, inputs={"examples": examples},
                                                   demonstrations=[d["id"] for d in demos], stats=stats))
    return stats
