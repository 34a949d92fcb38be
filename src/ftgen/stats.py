"""Bootstrap statistics for scores and deltas vs base (over test examples, and over seeds).

Scores arrive as a (seeds x examples) matrix of per-example values (one row for the base
model). A replicate resamples seeds and examples with replacement, using the *same* example
indices for the fine-tuned and the base model (a paired bootstrap), and recomputes the metric:
the mean for per-example metrics, or a corpus function (BLEU, macro-F1) over the resampled rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

CorpusFn = Callable[[np.ndarray], float]  # example indices -> corpus-level score


@dataclass
class Estimate:
    mean: float
    lo: float
    hi: float


@dataclass
class PairedEstimate:
    finetuned: Estimate
    base: Estimate
    delta: Estimate
    p_value: float  # two-sided paired bootstrap p-value for delta != 0


def _interval(samples: np.ndarray, point: float, alpha: float) -> Estimate:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(point), float(lo), float(hi))


def paired_bootstrap(
    finetuned: np.ndarray,
    base: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    corpus: tuple[Callable[[int, np.ndarray], float], Callable[[np.ndarray], float]] | None = None,
) -> PairedEstimate:
    """Fine-tuned (S x N) vs base (1 x N or N): CIs of both, of the delta, and a p-value.

    Without `corpus` the metric is the mean of per-example values. With
    `corpus=(ft_fn, base_fn)`, `ft_fn(seed_row, idx)` and `base_fn(idx)` compute the corpus
    metric on the resampled example indices (used for BLEU and macro-F1).
    """
    ft = np.atleast_2d(np.asarray(finetuned, dtype=float))
    b = np.asarray(base, dtype=float).reshape(-1)
    n_seeds, n = ft.shape
    if b.shape[0] != n:
        raise ValueError(f"paired bootstrap needs the same examples: {n} fine-tuned vs {b.shape[0]} base")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    idx = rng.integers(0, n, size=(n_boot, n))
    if corpus is None:
        ft_point, base_point = ft.mean(), b.mean()
        # mean over resampled seeds of the mean over resampled examples
        per_seed = np.stack([ft[s][idx].mean(axis=-1) for s in range(n_seeds)], axis=1)  # (n_boot, S)
        ft_samples = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
        base_samples = b[idx].mean(axis=1)
    else:
        ft_fn, base_fn = corpus
        all_idx = np.arange(n)
        ft_point = float(np.mean([ft_fn(s, all_idx) for s in range(n_seeds)]))
        base_point = base_fn(all_idx)
        ft_samples = np.array([np.mean([ft_fn(s, idx[r]) for s in seeds[r]]) for r in range(n_boot)])
        base_samples = np.array([base_fn(idx[r]) for r in range(n_boot)])
    deltas = ft_samples - base_samples
    p = 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))
    return PairedEstimate(
        finetuned=_interval(ft_samples, ft_point, alpha),
        base=_interval(base_samples, base_point, alpha),
        delta=_interval(deltas, ft_point - base_point, alpha),
        p_value=float(min(1.0, p)),
    )
