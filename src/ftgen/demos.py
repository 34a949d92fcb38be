"""Demonstration selection for FTICL training prompts and few-shot evaluation.

Training variants: `sft` and `s3ft` (no demonstrations; S3FT differs in its targets only) or
`fticl-<selection>-k<k>`:
- `fixed`: the first k of the dataset's few-shot pool, the same for every example (Yang et al.);
- `random`: k drawn per example (seeded by the example id) from the pool and the other training
  examples, never the example itself;
- `retrieved`: the k most similar pool/training examples to the example's input by BM25 (bm25s),
  never the example itself.
Evaluation always takes the first k of the eval dataset's few-shot pool: never test items.
"""

from __future__ import annotations

import hashlib
import random
import re

VARIANT_RE = re.compile(r"^(?:sft|s3ft|fticl-(?P<selection>fixed|random|retrieved)-k(?P<k>\d+))$")


class VariantError(ValueError):
    pass


def parse_variant(variant: str) -> tuple[str | None, int]:
    m = VARIANT_RE.match(variant)
    if not m:
        raise VariantError(
            f"unknown training variant {variant!r} (known: sft, s3ft, fticl-fixed-k<k>, fticl-random-k<k>, "
            f"fticl-retrieved-k<k>)"
        )
    return m["selection"], int(m["k"] or 0)


def _text(example: dict) -> str:
    return " ".join(example["inputs"].values())


class DemoSelector:
    """Picks the demonstrations for each training example of one (dataset, variant)."""

    def __init__(self, variant: str, pool: list[dict], train: list[dict], seed: int | None = None):
        """`seed` (finetune.demo_seed): what `random` draws with; the other selections need none."""
        self.selection, self.k = parse_variant(variant)
        self.pool, self.seed = pool, seed
        if self.selection == "random" and seed is None:
            raise VariantError(f"variant {variant!r} draws its demonstrations: give it a seed")
        if self.selection == "fixed" and self.k > len(pool):
            raise VariantError(f"variant {variant!r} needs {self.k} demonstrations; the few-shot pool has {len(pool)}")
        self.candidates = pool + train
        if self.selection in ("random", "retrieved") and self.k >= len(self.candidates):
            raise VariantError(f"variant {variant!r}: {len(self.candidates)} candidates for k={self.k}")
        self._index = None
        if self.selection == "retrieved":
            import bm25s

            self._index = bm25s.BM25()
            self._index.index(
                bm25s.tokenize([_text(c) for c in self.candidates], stopwords="en", show_progress=False),
                show_progress=False,
            )

    def __call__(self, example: dict) -> list[dict]:
        if self.selection is None:
            return []
        if self.selection == "fixed":
            return self.pool[: self.k]
        if self.selection == "random":
            others = [i for i, c in enumerate(self.candidates) if c["id"] != example["id"]]
            digest = hashlib.sha256(f"{self.seed}:{example['id']}".encode()).hexdigest()
            return [self.candidates[i] for i in random.Random(int(digest[:16], 16)).sample(others, self.k)]
        import bm25s

        query = bm25s.tokenize([_text(example)], stopwords="en", show_progress=False)
        docs, _ = self._index.retrieve(query, k=self.k + 1, show_progress=False)
        picked = [int(i) for i in docs[0] if self.candidates[int(i)]["id"] != example["id"]]
        return [self.candidates[i] for i in picked[: self.k]]
