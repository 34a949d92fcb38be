"""Bootstrap CIs and paired p-values against closed-form cases; the cluster bootstrap, p-value floor,
standard errors and multiplicity adjustment against closed-form values and simulated nulls."""

import math

import numpy as np
import pytest

import ftgen.stats as stats
from ftgen.report.tables import format_p
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
    res = paired_bootstrap(
        np.zeros((1, len(preds))), np.zeros(len(preds)), n_boot=300, corpus=(lambda s, idx: acc(idx), lambda idx: 0.5)
    )
    assert res.finetuned.mean == pytest.approx(0.75)
    assert res.finetuned.lo < 0.75 < res.finetuned.hi


# ----------------------------------------------------------------------------- groups, p-values, multiplicity
# Cluster bootstrap, p-value floor, standard errors and multiplicity adjustment against
# closed-form values and simulated nulls.
def old_example_bootstrap(ft, b, n_boot, seed):
    """The example bootstrap as it was before groups (a615d8f), for the per-example mean."""
    ft = np.atleast_2d(ft)
    n_seeds, n = ft.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    idx = rng.integers(0, n, size=(n_boot, n))
    per_seed = np.stack([ft[s][idx].mean(axis=-1) for s in range(n_seeds)], axis=1)
    ft_samples = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    return ft_samples, b[idx].mean(axis=1), idx


def clustered(rng, n_groups, size):
    """n_groups groups of `size` identical values (a normal draw per group)."""
    g = np.repeat(np.arange(n_groups), size)
    return g, rng.normal(0, 1, n_groups)[g]


# (a) singleton groups = the example bootstrap, draw for draw


def test_singleton_groups_are_the_example_bootstrap():
    rng = np.random.default_rng(0)
    ft, base = rng.normal(1, 1, (3, 150)), rng.normal(0, 1, 150)
    labels = [f"ctx-{k}" for k in rng.permutation(150)]  # distinct, in no sorted order
    plain = paired_bootstrap(ft, base, n_boot=500, seed=7)
    grouped = paired_bootstrap(ft, base, n_boot=500, seed=7, groups=labels)
    assert grouped == plain
    assert grouped.resampling_unit == "example" and grouped.n_groups == 150
    ft_s, base_s, _ = old_example_bootstrap(ft, base, 500, 7)
    lo, hi = np.quantile(ft_s - base_s, [0.025, 0.975])
    assert (grouped.delta.lo, grouped.delta.hi) == pytest.approx((lo, hi), rel=1e-12)
    assert grouped.base.se == pytest.approx(base_s.std(ddof=1), rel=1e-12)


def test_singleton_groups_give_the_example_indices_to_corpus_metrics():
    rng = np.random.default_rng(1)
    n = 60
    _, _, old_idx = old_example_bootstrap(np.zeros((2, n)), np.zeros(n), 50, 3)
    seen = []
    fn = lambda idx: seen.append(np.array(idx)) or 0.0  # noqa: E731
    paired_bootstrap(
        np.zeros((2, n)),
        np.zeros(n),
        n_boot=50,
        seed=3,
        groups=list(rng.permutation(n)),
        corpus=(lambda s, idx: fn(idx), fn),
    )
    base_calls = seen[-50:]  # base_fn is called once per replicate, after every ft_fn call
    assert all((a == b).all() for a, b in zip(base_calls, old_idx))


def test_corpus_metrics_see_whole_groups():
    sizes = np.array([1, 2, 3, 4, 5] * 4)
    g = np.repeat(np.arange(len(sizes)), sizes)
    perm = np.random.default_rng(2).permutation(len(g))  # members of a group need not be adjacent
    g = g[perm]
    seen = []
    fn = lambda idx: seen.append(np.array(idx)) or float(len(idx))  # noqa: E731
    res = paired_bootstrap(
        np.zeros((1, len(g))), np.zeros(len(g)), n_boot=100, seed=0, groups=g, corpus=(lambda s, idx: fn(idx), fn)
    )
    assert res.resampling_unit == "group (n_groups=20)" and res.n_groups == 20
    for idx in seen[1:]:  # [0] is the point estimate on all rows
        times = np.bincount(g[idx], minlength=20) / sizes  # how often each group was drawn
        assert (times == np.round(times)).all() and times.sum() == 20  # 20 whole groups per replicate
        assert (np.bincount(idx, minlength=len(g)) == times[g]).all()  # each member as often as its group
    assert res.finetuned.se > 0  # replicate sizes vary with the drawn groups


# (b) clustered data: the cluster CI is wider and its SE is the closed-form SE of the group means


def test_cluster_ci_matches_closed_form_and_is_wider_than_example_ci():
    rng = np.random.default_rng(3)
    g, x = clustered(rng, 20, 10)  # 20 groups of 10 identical values
    gm = x.reshape(20, 10).mean(axis=1)
    closed = gm.std(ddof=0) / math.sqrt(20)  # the bootstrap SE of a mean of 20 iid group means
    example = paired_bootstrap(x, np.zeros_like(x), n_boot=4000, seed=0).finetuned
    cluster = paired_bootstrap(x, np.zeros_like(x), n_boot=4000, seed=0, groups=g).finetuned
    assert cluster.se == pytest.approx(closed, rel=0.06)
    assert cluster.hi - cluster.lo == pytest.approx(2 * 1.96 * closed, rel=0.12)
    # resampling examples treats 200 copies as independent: SE too small by ~sqrt(10)
    assert example.se == pytest.approx(x.std() / math.sqrt(200), rel=0.06)
    assert (cluster.hi - cluster.lo) > 2.5 * (example.hi - example.lo)


# (c) calibration under a clustered null


def null_rejections(reps=400, n_boot=200, n_groups=100, seed=0):
    """Fine-tuned and base scored from the same distribution; items share a per-group difficulty
    and a per-group model effect, so items of a group are correlated."""
    rng = np.random.default_rng(seed)
    cluster = example = 0
    for k in range(reps):
        g = np.repeat(np.arange(n_groups), rng.integers(2, 7, size=n_groups))
        difficulty = rng.normal(0, 1, n_groups)[g]
        base = difficulty + rng.normal(0, 1, n_groups)[g] + rng.normal(0, 0.5, len(g))
        ft = difficulty + rng.normal(0, 1, n_groups)[g] + rng.normal(0, 0.5, len(g))
        cluster += paired_bootstrap(ft, base, n_boot=n_boot, seed=k, groups=g).p_value < 0.05
        example += paired_bootstrap(ft, base, n_boot=n_boot, seed=k).p_value < 0.05
    return cluster / reps, example / reps


def test_cluster_bootstrap_is_calibrated_under_a_clustered_null():
    cluster, example = null_rejections()
    mc = 3 * math.sqrt(0.05 * 0.95 / 400)
    print(f"rejection rate at 0.05: cluster {cluster:.3f}, example {example:.3f}")
    assert abs(cluster - 0.05) <= mc
    # the example bootstrap ignores the within-group correlation and rejects a true null far too often
    assert example > 0.05 + 4 * mc


# (d) p-values floored at 1/B


def test_p_value_is_floored_at_one_over_b():
    base = np.random.default_rng(4).normal(0, 1, 300)
    for n_boot, text in ((1000, "< 0.001"), (2000, "< 0.0005")):
        res = paired_bootstrap(base + 5.0, base, n_boot=n_boot, seed=0)
        assert res.p_value == 1 / n_boot  # was 0.0: "no replicate crossed zero" is not p = 0
        assert res.p_raw == 0.0 and res.p_floored
        assert format_p(res.p_value, n_boot) == text
    assert format_p(0.0123, 1000) == "0.012" and format_p(1.0, 1000) == "1.000"
    assert format_p(0.0004, 10000) == "0.0004"  # above this B's floor: a number
    same = paired_bootstrap(base, base, n_boot=500)
    assert same.p_value == 1.0 and not same.p_floored


# (e) Holm and Benjamini-Hochberg

P = [0.01, 0.04, 0.03, 0.005, 0.5]


def test_holm_and_bh_against_hand_computed_values():
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 (m = 5)
    # Holm: running max of (5, 4, 3, 2, 1) * p = 0.025, 0.04, 0.09, 0.08 -> 0.09, 0.5
    assert stats.holm(P) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
    # BH: 5/i * p = 0.025, 0.025, 0.05, 0.05, 0.5; running min from the top
    assert stats.bh(P) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert stats.holm([0.3, 0.6]) == pytest.approx([0.6, 0.6]) and stats.bh([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    # not tested (None) is not in the family
    h = stats.holm([0.01, None, 0.02])
    assert h[0] == pytest.approx(0.02) and math.isnan(h[1]) and h[2] == pytest.approx(0.02)
    holm, bh = stats.adjust_within([0.01, 0.02, 0.01, 0.3, 1.0], ["a", "a", "b", "b", None])
    assert holm[:4] == pytest.approx([0.02, 0.02, 0.02, 0.3]) and math.isnan(holm[4])
    assert bh[:4] == pytest.approx([0.02, 0.02, 0.02, 0.3]) and math.isnan(bh[4])


def test_bh_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    if not hasattr(scipy_stats, "false_discovery_control"):
        pytest.skip("scipy < 1.11")
    p = np.random.default_rng(5).uniform(0, 0.2, 40) ** 2
    assert stats.bh(p) == pytest.approx(scipy_stats.false_discovery_control(p, method="bh"))


def test_holm_and_bh_against_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(6).uniform(0, 0.2, 40) ** 2
    assert stats.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])
    assert stats.bh(p) == pytest.approx(multitest.multipletests(p, method="fdr_bh")[1])


# (f) standard errors


def test_standard_errors_match_closed_form():
    rng = np.random.default_rng(7)
    n = 2000
    base = rng.normal(0, 2, n)
    diff = rng.normal(0.3, 1, n)
    res = paired_bootstrap(base + diff, base, n_boot=3000, seed=0)
    assert res.base.se == pytest.approx(base.std(ddof=1) / math.sqrt(n), rel=0.07)
    assert res.finetuned.se == pytest.approx((base + diff).std(ddof=1) / math.sqrt(n), rel=0.07)
    assert res.delta.se == pytest.approx(diff.std(ddof=1) / math.sqrt(n), rel=0.07)
    const = paired_bootstrap(np.full(50, 2.0), np.full(50, 1.0), n_boot=100)
    assert (const.finetuned.se, const.base.se, const.delta.se) == (0.0, 0.0, 0.0)


def test_stratified_cluster_means_resample_groups_within_each_stratum():
    rng = np.random.default_rng(8)
    strata = [clustered(rng, 30, 8) for _ in range(3)]
    values, groups = [x for _, x in strata], [g for g, _ in strata]
    clustered_reps = stats.stratified_cluster_means(values, groups, 3000, np.random.default_rng(0))
    example_reps = stats.stratified_cluster_means(values, None, 3000, np.random.default_rng(0))
    closed = math.sqrt(sum((x.reshape(30, 8).mean(axis=1).std() / math.sqrt(30)) ** 2 for x in values)) / 3
    assert clustered_reps.std() == pytest.approx(closed, rel=0.08)
    assert clustered_reps.std() > 2 * example_reps.std()
    # no groups: the old per-benchmark example bootstrap, draw for draw
    old_rng = np.random.default_rng(0)
    old = np.mean([d[old_rng.integers(0, len(d), size=(3000, len(d)))].mean(axis=1) for d in values], axis=0)
    assert example_reps == pytest.approx(old, rel=1e-12)


def test_one_group_gives_no_interval_and_no_p_value():
    """Every test example from one source (one Wikipedia page): resampling that one group returns
    the same data every time - a zero-width CI and p '< 1/B' would claim precision there is none."""
    from ftgen.stats import paired_bootstrap

    ft, base = np.r_[np.ones(40), np.zeros(24)], np.r_[np.ones(30), np.zeros(34)]
    est = paired_bootstrap(ft, base, n_boot=300, groups=["page"] * 64)
    assert est.delta.mean == pytest.approx(10 / 64)
    assert np.isnan(est.delta.lo) and np.isnan(est.delta.se) and np.isnan(est.p_value)
    assert "too few groups" in est.resampling_unit
    few = paired_bootstrap(ft, base, n_boot=300, groups=[i % 5 for i in range(64)])
    assert "fewer than 10 groups" in few.resampling_unit and not np.isnan(few.delta.lo)
