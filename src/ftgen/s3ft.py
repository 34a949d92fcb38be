"""S3FT (Gupta et al. 2025) training targets: the model's own answer where a judge accepts it,
else its paraphrase of the gold answer where that is accepted, else the gold answer.

The builder keeps every training example (same ids, same order as the SFT set), so SFT and S3FT
differ only in their targets; each row records where its target came from (`self`,
`paraphrase`, `gold`). Model calls are passed in as functions, so the same builder serves a
local model, an HTTP judge, or a scripted model in tests.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

Judge = Callable[[str, dict], bool]  # (candidate answer, example) -> accepted?
Paraphraser = Callable[[list[dict]], list[str]]  # examples -> the model's rewrite of each gold answer

PROVENANCE = ("self", "paraphrase", "gold")


def select_targets(examples: list[dict], own_answers: dict[str, str], judge: Judge,
                   paraphrase: Paraphraser) -> tuple[list[dict], dict]:
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
    card = {"examples": len(ordered), **{p: counts.get(p, 0) for p in PROVENANCE},
            "fractions": {p: counts.get(p, 0) / max(1, len(ordered)) for p in PROVENANCE}}
    return ordered, card
