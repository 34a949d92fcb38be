"""Bootstrap CIs and paired p-values against closed-form cases."""

import math

import numpy as np
import pytest

from ftgen.stats import paired_bootstrap


def mean_ci(x, **kw):
    """CI of a plain mean: the fine-tuned side of a paired bootstrap against a zero base."""
    x = np.asarray(x, dtype=float)
    return paired_bootstrap(x, np.zeros_like(x), **kw).finetuned


def test_mean_ci_matches_normal_approximation():
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.3, size=4000).astype(float)
    est = mean_ci(x, n_boot=4000, seed=0)
    half = 1.96 * math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert est.mean == pytest.approx(x.mean())
    assert est.lo == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert est.hi == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_constant_values_give_a_degenerate_interval():
    est = mean_ci([2.0] * 50)
    assert (est.mean, est.lo, est.hi) == (2.0, 2.0, 2.0)


def test_paired_delta_ci_matches_closed_form_and_p_value():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, size=3000)
    diff = rng.normal(0.1, 0.5, size=3000)
    res = paired_bootstrap(base + diff, base, n_boot=3000, seed=0)
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert res.delta.mean == pytest.approx(diff.mean())
    assert res.delta.lo == pytest.approx(diff.mean() - 1.96 * se, abs=0.15 * se)
    assert res.delta.hi == pytest.approx(diff.mean() + 1.96 * se, abs=0.15 * se)
    # z = 0.1 / (0.5 / sqrt(3000)) ~ 11: essentially never crosses zero
    assert res.p_value < 0.001
    same = paired_bootstrap(base, base, n_boot=500)
    assert same.delta.mean == 0 and same.p_value == 1.0


def test_no_effect_gives_large_p_value():
    rng = np.random.default_rng(3)
    a, b = rng.binomial(1, 0.5, 400).astype(float), rng.binomial(1, 0.5, 400).astype(float)
    res = paired_bootstrap(a, b, n_boot=2000, seed=1)
    z = abs(a.mean() - b.mean()) / math.sqrt((a - b).var(ddof=1) / len(a))
    closed = math.erfc(z / math.sqrt(2))  # two-sided normal p-value
    assert res.p_value == pytest.approx(closed, abs=0.05)


def test_seeds_widen_the_interval():
    rng = np.random.default_rng(4)
    base = rng.binomial(1, 0.5, 300).astype(float)
    one = np.tile(base, (1, 1))
    spread = np.stack([np.clip(base + rng.binomial(1, p, 300), 0, 1) for p in (0.0, 0.3, 0.6)])
    narrow = paired_bootstrap(one, base, seed=0)
    wide = paired_bootstrap(spread, base, seed=0)
    assert (wide.finetuned.hi - wide.finetuned.lo) > (narrow.finetuned.hi - narrow.finetuned.lo)


def test_corpus_metric_bootstrap():
    preds = np.array([1, 0, 1, 1, 0, 1, 0, 0] * 20)
    gold = np.array([1, 0, 0, 1, 0, 1, 1, 0] * 20)
    acc = lambda idx: float((preds[idx] == gold[idx]).mean())  # noqa: E731
    res = paired_bootstrap(np.zeros((1, len(preds))), np.zeros(len(preds)), n_boot=300,
                           corpus=(lambda s, idx: acc(idx), lambda idx: 0.5))
    assert res.finetuned.mean == pytest.approx(0.75)
    assert res.finetuned.lo < 0.75 < res.finetuned.hi
