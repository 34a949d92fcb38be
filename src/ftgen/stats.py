"""Bootstrap statistics for scores and deltas vs base (over test examples or groups, and seeds).

Scores arrive as a (seeds x examples) matrix of per-example values (one row for the base
model). A replicate resamples seeds and *groups* of examples with replacement, using the *same*
group draws for the fine-tuned and the base model (a paired bootstrap), and recomputes the metric:
the mean for per-example metrics, or a corpus function (BLEU, macro-F1) over the rows of the drawn
groups. Examples that share a context / premise / gold passage are not independent: resampling
them one by one understates the variance (CIs too narrow, p-values too small), so the group is the
resampling unit whenever the eval set has groups (a cluster bootstrap). Without groups every
example is its own group, which is exactly the plain example bootstrap.

A bootstrap with B replicates cannot show a p-value below 1/B: the reported p is max(p, 1/B)
(the report tables print it "< 1/B": ftgen.report.tables.format_p). Tables with many cells add
Holm (FWER) and Benjamini-Hochberg (FDR) adjusted p-values within a stated family.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CorpusFn = Callable[[np.ndarray], float]  # example indices -> corpus-level score
# Below this many groups a cluster bootstrap understates the spread (it is a large-sample method);
# the row's resampling unit says so.
MIN_GROUPS = 10


@dataclass
class Estimate:
    mean: float
    lo: float
    hi: float
    se: float = float("nan")  # bootstrap standard error: the SD of the bootstrap replicates


@dataclass
class PairedEstimate:
    finetuned: Estimate
    base: Estimate
    delta: Estimate
    p_value: float  # two-sided paired bootstrap p for delta != 0, floored at 1/n_boot
    p_raw: float = float("nan")  # the bootstrap's own p (0 when no replicate crosses zero)
    n_boot: int = 0
    resampling_unit: str = "example"  # "example" or "group (n_groups=G)"
    n_groups: int = 0  # resampled units (= examples when every group is a singleton)

    @property
    def p_floored(self) -> bool:
        return self.p_raw < 1 / self.n_boot


class Clusters:
    """Group labels -> codes in order of first appearance, so that with singleton groups group k
    is example k and a group draw is the same index array as an example draw."""

    def __init__(self, groups: Sequence[Hashable] | np.ndarray | None, n: int):
        if groups is None:
            codes = np.arange(n)
        else:
            if len(groups) != n:
                raise ValueError(f"{len(groups)} group labels for {n} examples")
            first: dict = {}
            codes = np.array([first.setdefault(g, len(first)) for g in groups], dtype=np.int64)
        self.codes = codes
        self.n_groups = int(codes.max()) + 1 if n else 0
        self.sizes = np.bincount(codes, minlength=self.n_groups)
        self.members = np.argsort(codes, kind="stable")  # example indices, group by group
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.singletons = self.n_groups == n  # then codes are 0..n-1 in order: group k is example k

    @property
    def unit(self) -> str:
        return "example" if self.singletons else f"group (n_groups={self.n_groups})"

    def draw(self, rng: np.random.Generator, n_boot: int) -> np.ndarray:
        """(n_boot, G) group codes drawn with replacement."""
        return rng.integers(0, self.n_groups, size=(n_boot, self.n_groups))

    def counts(self, draws: np.ndarray) -> np.ndarray:
        """Examples in each replicate (the denominator of a replicate's mean)."""
        if (self.sizes == self.sizes[0]).all():
            return np.full(draws.shape[0], self.sizes[0] * draws.shape[1])
        return self.sizes[draws].sum(axis=1)

    def means(self, values: np.ndarray, draws: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Replicate means of per-example values: the mean over all members of the drawn groups."""
        sums = values if self.singletons else np.bincount(self.codes, weights=values, minlength=self.n_groups)
        return sums[draws].sum(axis=1) / (self.counts(draws) if counts is None else counts)

    def indices(self, draw: np.ndarray) -> np.ndarray:
        """One replicate's example indices: the members of the drawn groups, concatenated."""
        if self.singletons:
            return draw
        lengths = self.sizes[draw]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self.members[np.repeat(self.starts[draw], lengths) + offsets]


def _interval(samples: np.ndarray, point: float, alpha: float) -> Estimate:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    se = float(samples.std(ddof=1)) if len(samples) > 1 else float("nan")
    return Estimate(float(point), float(lo), float(hi), se)


def paired_bootstrap(
    finetuned: np.ndarray,
    base: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    corpus: tuple[Callable[[int, np.ndarray], float], Callable[[np.ndarray], float]] | None = None,
    groups: Sequence[Hashable] | np.ndarray | None = None,
) -> PairedEstimate:
    """Fine-tuned (S x N) vs base (1 x N or N): CIs and SEs of both, of the delta, and a p-value.

    Without `corpus` the metric is the mean of per-example values. With
    `corpus=(ft_fn, base_fn)`, `ft_fn(seed_row, idx)` and `base_fn(idx)` compute the corpus
    metric on the resampled example indices (used for BLEU and macro-F1). `groups` (one label per
    example) makes whole groups the resampling unit; None or all-singleton groups give the example
    bootstrap, draw for draw.
    """
    ft = np.atleast_2d(np.asarray(finetuned, dtype=float))
    b = np.asarray(base, dtype=float).reshape(-1)
    n_seeds, n = ft.shape
    if b.shape[0] != n:
        raise ValueError(f"paired bootstrap needs the same examples: {n} fine-tuned vs {b.shape[0]} base")
    clusters = Clusters(groups, n)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    draws = clusters.draw(rng, n_boot)
    if corpus is None:
        ft_point, base_point = ft.mean(), b.mean()
        counts = clusters.counts(draws)
        # mean over resampled seeds of the mean over the resampled groups' examples
        per_seed = np.stack([clusters.means(ft[s], draws, counts) for s in range(n_seeds)], axis=1)  # (n_boot, S)
        ft_samples = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
        base_samples = clusters.means(b, draws, counts)
    else:
        ft_fn, base_fn = corpus
        all_idx = np.arange(n)
        ft_point = float(np.mean([ft_fn(s, all_idx) for s in range(n_seeds)]))
        base_point = base_fn(all_idx)
        idx = [clusters.indices(draws[r]) for r in range(n_boot)]
        ft_samples = np.array([np.mean([ft_fn(s, idx[r]) for s in seeds[r]]) for r in range(n_boot)])
        base_samples = np.array([base_fn(idx[r]) for r in range(n_boot)])
    deltas = ft_samples - base_samples
    p = float(min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))))
    est = PairedEstimate(
        finetuned=_interval(ft_samples, ft_point, alpha),
        base=_interval(base_samples, base_point, alpha),
        delta=_interval(deltas, ft_point - base_point, alpha),
        p_value=max(p, 1 / n_boot),
        p_raw=p,
        n_boot=n_boot,
        resampling_unit=clusters.unit,
        n_groups=clusters.n_groups,
    )
    if clusters.n_groups < 2 and n_seeds < 2:
        # one group (every test example from one Wikipedia page, say): resampling it returns the
        # same data every time, a zero-width CI and p "< 1/B" - a precision the data do not have.
        nan = float("nan")
        for e in (est.finetuned, est.base, est.delta):
            e.lo = e.hi = e.se = nan
        est.p_value = est.p_raw = nan
        est.resampling_unit += ": too few groups to resample, no CI"
    elif not clusters.singletons and clusters.n_groups < MIN_GROUPS:
        est.resampling_unit += f": fewer than {MIN_GROUPS} groups, CI optimistic"
    return est


def stratified_cluster_means(
    values: list[np.ndarray], groups: list | None, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Replicates of the unweighted mean over strata (benchmarks) of each stratum's mean, groups
    resampled within each stratum (S3FT's mean general delta)."""
    reps = []
    for v, g in zip(values, groups or [None] * len(values)):
        clusters = Clusters(g, len(v))
        reps.append(clusters.means(v, clusters.draw(rng, n_boot)))
    return np.mean(reps, axis=0)


def _num(p) -> float:
    return float("nan") if p is None else float(p)


def _adjusted(p: Sequence[float | None], step) -> np.ndarray:
    """`step(sorted p, m)` on the family's p-values (None / NaN entries stay NaN and are not counted
    in the family), put back in the input order and capped at 1."""
    p = np.array([_num(x) for x in p], dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        out[order] = np.minimum(1.0, step(p[order], len(ok)))
    return out


def holm(p: Sequence[float | None]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error)."""
    return _adjusted(p, lambda q, m: np.maximum.accumulate((m - np.arange(m)) * q))


def bh(p: Sequence[float | None]) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate)."""
    return _adjusted(p, lambda q, m: np.minimum.accumulate((m / np.arange(1, m + 1) * q)[::-1])[::-1])


def adjust_within(p: Sequence[float | None], families: Sequence[Hashable | None]) -> tuple[np.ndarray, np.ndarray]:
    """(Holm, BH) adjusted p-values, each family (a key per test; None = not a test) on its own."""
    p = np.array([_num(x) for x in p], dtype=float)
    h, f = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    for fam in dict.fromkeys(k for k in families if k is not None):
        sel = np.array([k == fam for k in families])
        h[sel], f[sel] = holm(p[sel]), bh(p[sel])
    return h, f
