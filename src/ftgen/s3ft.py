"""S3FT (Gupta et al. 2025) training targets: the model's own answer where a judge accepts it,
else its paraphrase of the gold answer where that is accepted, else the gold answer.

The builder keeps every training example (same ids, same order as the SFT set), so SFT and S3FT
differ only in their targets; each row records where its target came from (`self`,
`paraphrase`, `gold`). Model calls are passed in as functions, so the same builder serves a
local model, an HTTP judge, or a scripted model in tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .step import Input, Json, Output, Threads

Judge = Callable[[str, dict], bool]  # (candidate answer, example) -> accepted?
Paraphraser = Callable[[list[dict]], list[str]]  # examples -> the model's rewrite of each gold answer

PROVENANCE = ("self", "paraphrase", "gold")


def select_targets(
    examples: list[dict], own_answers: dict[str, str], judge: Judge, paraphrase: Paraphraser
) -> tuple[list[dict], dict]:
    """One training row per example with `target` and `provenance`; plus the counts for the card.

    The paraphraser is asked only for the examples whose own answer was rejected, in one batch.
    """
    missing = [ex["id"] for ex in examples if ex["id"] not in own_answers]
    if missing:
        raise ValueError(f"no base-model answer for {len(missing)} training example(s), e.g. {missing[:3]}")
    rows: dict[str, dict] = {}
    rejected = []
    for ex in examples:
        answer = own_answers[ex["id"]]
        if answer.strip() and judge(answer, ex):
            rows[ex["id"]] = {**ex, "target": answer, "provenance": "self"}
        else:
            rejected.append(ex)
    rewrites = paraphrase(rejected) if rejected else []
    if len(rewrites) != len(rejected):
        raise ValueError(f"paraphraser returned {len(rewrites)} rewrites for {len(rejected)} examples")
    for ex, rewrite in zip(rejected, rewrites):
        if rewrite.strip() and judge(rewrite, ex):
            rows[ex["id"]] = {**ex, "target": rewrite, "provenance": "paraphrase"}
        else:
            rows[ex["id"]] = {**ex, "target": ex["references"][0], "provenance": "gold"}
    ordered = [rows[ex["id"]] for ex in examples]
    counts = Counter(r["provenance"] for r in ordered)
    card = {
        "examples": len(ordered),
        **{p: counts.get(p, 0) for p in PROVENANCE},
        "fractions": {p: counts.get(p, 0) / max(1, len(ordered)) for p in PROVENANCE},
    }
    return ordered, card


def accepts(metric: str, threshold: float):
    """A judge from a per-example metric (0-100): math_match, pass_at_1 (sandboxed unit tests),
    token_f1 / exact_match for reading comprehension."""
    from .metrics import PER_EXAMPLE, pass_at_1

    def judge(candidate: str, example: dict) -> bool:
        if metric == "pass_at_1":
            return 100 * pass_at_1(candidate, example["inputs"]) >= threshold
        return 100 * PER_EXAMPLE[metric](candidate, example["references"]) >= threshold

    return judge


def build_s3ft_dataset(
    *,
    model: Input,
    examples: Input,
    self_answers: Input,
    spec: Json,
    targets: Output,
    card: Output,
    paraphrases: Output,
    threads: Threads = None,
    log=print,
) -> dict:
    """The S3FT training set: the dataset with each training example's target replaced by the base
    model's own answer, or its accepted paraphrase of the gold answer, or the gold answer.

    `self_answers` is the base model's answers on the training split (an evaluate job with
    split=train). Paraphrases are generated greedily, in batches, for rejected examples only.
    """
    import json

    import polars as pl

    from .artifacts import atomic_file, manifest, write_json
    from .generation import greedy_generate
    from .modeling import default_device, load_model, load_tokenizer, resolve_bf16, set_threads
    from .prompts import encode_example, render_body

    set_threads(threads)
    df = pl.read_parquet(examples)
    train = df.filter(pl.col("split") == "train").to_dicts()
    with open(self_answers, encoding="utf-8") as fh:
        own = {r["id"]: r["prediction"] for r in map(json.loads, fh)}
    judge = accepts(spec["judge"]["metric"], float(spec["judge"]["threshold"]))
    prompt_spec = spec["prompt"]
    tok = lm = None
    paraphrase_rows = []

    def paraphrase(batch: list[dict]) -> list[str]:
        nonlocal tok, lm
        tok, lm = load_tokenizer(model), load_model(model, device=default_device())
        bf16 = resolve_bf16(spec["bf16"], default_device())
        prompts = []
        for ex in batch:
            request = spec["paraphrase_prompt"].format(
                task=render_body(prompt_spec, spec["format"], ex["inputs"]), gold=ex["references"][0]
            )
            fake = {**ex, "inputs": {"request": request}}
            pp_request = {**prompt_spec, "prompts": {"0": "{request}"}, "inputs": ["request"]}
            prompts.append(
                encode_example(
                    tok, pp_request, 0, fake, [], None, budget=prompt_spec["max_length"] - prompt_spec["max_new_tokens"]
                ).prompt_ids
            )
        texts = greedy_generate(
            lm,
            tok,
            prompts,
            prompt_spec["max_new_tokens"],
            spec["batch_size"],
            bf16,
            stop=prompt_spec.get("stop", "\n\n"),
            desc="paraphrasing",
        )
        paraphrase_rows.extend({"id": ex["id"], "paraphrase": t} for ex, t in zip(batch, texts))
        return texts

    rows, counts = select_targets(train, own, judge, paraphrase)
    by_id = {r["id"]: r for r in rows}
    for row in paraphrase_rows:
        row["accepted"] = by_id[row["id"]]["provenance"] == "paraphrase"
    out = df.with_columns(
        pl.col("references").alias("gold_references"),
        pl.Series("provenance", [by_id[i]["provenance"] if i in by_id else None for i in df["id"]], dtype=pl.String),
        pl.Series(
            "references",
            [[by_id[i]["target"]] if i in by_id else refs for i, refs in zip(df["id"], df["references"])],
            dtype=pl.List(pl.String),
        ),
    )
    with atomic_file(targets, "wb") as fh:
        out.write_parquet(fh)
    with atomic_file(paraphrases) as fh:
        for row in paraphrase_rows:
            fh.write(json.dumps(row) + "\n")
    summary = {
        "dataset": spec["dataset"],
        **counts,
        "judge": spec["judge"],
        "manifest": manifest(
            "s3ft-dataset",
            spec,
            inputs={"examples": examples, "self": self_answers, "model_manifest": f"{model}/manifest.json"},
        ),
    }
    write_json(card, summary)
    log(json.dumps({k: v for k, v in summary.items() if k != "manifest"}))
    return summary
