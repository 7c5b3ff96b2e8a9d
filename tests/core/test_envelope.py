"""The global envelope test against its definition, hand-built cases and its null calibration."""

import numpy as np
import pytest
from scipy import stats

from napari_niche.core import (
    ENVELOPE_COLUMNS,
    NicheError,
    fold_change_by_bin,
    global_envelope_test,
    min_null_sets,
    monte_carlo_envelope,
)


def reference_erl(observed, simulated, alternative="two-sided"):
    """The ERL p-value straight from Myllymäki et al. (2017), in plain Python.

    Pointwise average ranks counted by hand: two-sided rank min(from below, from above),
    "less" the rank from below, "greater" the rank from above (GET); each curve's ranks
    sorted, tuples compared lexicographically; p = share of all curves whose sorted ranks
    are <= the observed curve's.
    """
    curves = [list(map(float, observed))] + [list(map(float, row)) for row in simulated]
    n, k = len(curves), len(curves[0])
    sorted_ranks = []
    for i in range(n):
        ranks = []
        for r in range(k):
            below = sum(curves[j][r] < curves[i][r] for j in range(n))
            equal = sum(curves[j][r] == curves[i][r] for j in range(n))
            low = below + (equal + 1) / 2
            high = n + 1 - low
            ranks.append({"two-sided": min(low, high), "less": low, "greater": high}[alternative])
        sorted_ranks.append(tuple(sorted(ranks)))
    p = sum(t <= sorted_ranks[0] for t in sorted_ranks) / n
    return p, sorted_ranks


def test_min_null_sets():
    assert min_null_sets(0.05) == 19
    assert min_null_sets(0.01) == 99
    assert min_null_sets(0.1) == 9
    with pytest.raises(NicheError, match="alpha"):
        min_null_sets(0.7)


def test_one_bin_by_hand():
    # With one bin the lowest and the highest curve both have rank 1 and tie: even the
    # most extreme curve gets p = 2 / (s + 1). Both are excluded from the envelope when
    # 2 <= alpha (s + 1), so the envelope runs from the 2nd lowest to the 2nd highest.
    sims = np.arange(39, dtype=float)[:, None]  # 0 .. 38
    t = global_envelope_test([100.0], sims, alpha=0.05)
    assert t.p_value == pytest.approx(2 / 40)
    # GET's p-interval: no curve strictly more extreme (0), two at least as extreme (2/40)
    assert t.p_interval == (0.0, pytest.approx(2 / 40))
    assert t.extreme_rank == 1
    assert t.low[0] == 1.0 and t.high[0] == 38.0
    assert list(t.outside) == [1] and t.rejected
    # in the middle: rank 20 of 40 from both sides, p = 1
    mid = global_envelope_test([18.5], sims, alpha=0.05)
    assert mid.p_value == 1.0 and not mid.rejected and list(mid.outside) == [0]
    # with 19 null sets the pair of extreme curves (2 of 20) does not fit in 0.05 * 20
    few = global_envelope_test([100.0], sims[:19], alpha=0.05)
    assert few.p_value == pytest.approx(2 / 20)
    assert few.low[0] == 0.0 and few.high[0] == 100.0 and list(few.outside) == [0]


def test_erl_breaks_ties_of_the_extreme_rank():
    # Two bins, 19 null curves. The observed curve is the highest in both bins; null
    # curve 0 is the lowest in bin 0 only, null curve 1 the lowest in bin 1 only. All
    # three have extreme rank 1, so the plain extreme rank test cannot tell them apart
    # (p-interval [0, 3/20]: none strictly more extreme, 3 at least as extreme); the
    # observed curve reaches rank 1 twice, so ERL ranks it
    # strictly more extreme: p = 1/20, and it alone is left out of the envelope.
    rng = np.random.default_rng(3)
    sims = rng.uniform(1, 2, size=(19, 2))
    sims[0, 0] = sims[1, 1] = 0.0
    t = global_envelope_test([5.0, 5.0], sims, alpha=0.05)
    assert t.p_interval == (0.0, pytest.approx(3 / 20))
    assert t.p_value == pytest.approx(1 / 20)
    assert list(t.outside) == [1, 1]
    np.testing.assert_allclose(t.low, [0.0, 0.0])
    np.testing.assert_allclose(t.high, sims.max(axis=0))


@pytest.mark.parametrize("integer", [False, True])
def test_p_value_matches_the_definition(integer):
    rng = np.random.default_rng(11)
    for case in range(40):
        s, k = int(rng.choice([19, 24, 39])), int(rng.integers(1, 6))
        if integer:  # many ties, as per-bin counts give
            sims = rng.integers(0, 4, size=(s, k)).astype(float)
            obs = rng.integers(0, 4, size=k).astype(float)
        else:
            sims = rng.normal(size=(s, k))
            obs = rng.normal(size=k) + (case % 3) * 1.5
        t = global_envelope_test(obs, sims)
        p, sorted_ranks = reference_erl(obs, sims)
        assert t.p_value == pytest.approx(p), case
        assert t.extreme_rank == sorted_ranks[0][0]
        lo, hi = t.p_interval
        assert lo <= t.p_value <= hi
        np.testing.assert_allclose(t.pointwise_low, np.quantile(sims, 0.025, axis=0))
        np.testing.assert_allclose(t.pointwise_high, np.quantile(sims, 0.975, axis=0))


def test_observed_leaves_the_global_envelope_iff_p_at_most_alpha():
    # Continuous curves (no ties): the ERL envelope's defining property.
    rng = np.random.default_rng(5)
    outcomes = set()
    for case in range(300):
        s, k = int(rng.choice([19, 39, 99])), int(rng.integers(1, 12))
        sims = rng.normal(size=(s, k))
        obs = rng.normal(size=k)
        obs[rng.integers(k)] += rng.choice([0.0, 2.0, 3.0])  # sometimes a bump in one bin
        t = global_envelope_test(obs, sims, alpha=0.05)
        left = bool(np.any(t.outside != 0))
        assert left == (t.p_value <= 0.05), (case, t.p_value)
        assert np.array_equal(t.outside != 0, (obs > t.high) | (obs < t.low))
        outcomes.add(left)
    assert outcomes == {True, False}


def central_curves(observed, simulated, alpha):
    """Curves kept for the envelope: fewer than alpha (s + 1) curves at least as extreme."""
    _, sorted_ranks = reference_erl(observed, simulated)
    counts = np.array([sum(t <= ti for t in sorted_ranks) for ti in sorted_ranks])
    return counts > alpha * len(sorted_ranks) + 1e-9


def test_envelope_is_taken_over_the_central_curves():
    # 99 null curves at alpha 0.05: the 5 most extreme of the 100 curves are left out.
    rng = np.random.default_rng(8)
    sims = rng.normal(size=(99, 6))
    obs = rng.normal(size=6)
    t = global_envelope_test(obs, sims, alpha=0.05)
    curves = np.vstack([obs, sims])
    central = central_curves(obs, sims, 0.05)
    assert 95 <= central.sum() < 100
    np.testing.assert_allclose(t.low, curves[central].min(axis=0))
    np.testing.assert_allclose(t.high, curves[central].max(axis=0))


def test_bad_input():
    sims = np.zeros((19, 3))
    with pytest.raises(NicheError, match="at least 19 null sets, got 18"):
        global_envelope_test([0, 0, 0], sims[:18])
    with pytest.raises(NicheError, match=r"\(s, 3\)"):
        global_envelope_test([0, 0, 0], np.zeros((19, 2)))
    with pytest.raises(NicheError, match="NaN"):
        global_envelope_test([0, np.nan, 0], sims)
    with pytest.raises(NicheError, match="alpha"):
        global_envelope_test([0, 0, 0], sims, alpha=0)
    with pytest.raises(NicheError, match="non-empty"):
        global_envelope_test([], np.zeros((19, 0)))


# -- monte_carlo_envelope -------------------------------------------------------------------
def _null_sets(rng, n, s, draw):
    return draw(rng, n), draw(rng, n * s), np.repeat(np.arange(s), n)


def test_monte_carlo_envelope_by_hand():
    rng = np.random.default_rng(0)
    n, s = 40, 19
    cells, dots, sets = _null_sets(rng, n, s, lambda g, m: g.gamma(2.0, 5.0, m))
    sets = rng.permutation(sets)  # null sets need not be contiguous
    table, test = monte_carlo_envelope(cells, dots, sets, bin_width_um=5, min_dots=10)
    assert list(table.columns) == ENVELOPE_COLUMNS
    # the fold change part equals fold_change_by_bin on the pooled dots
    fold = fold_change_by_bin(cells, dots, bin_width_um=5, min_dots=10)
    for col in fold.columns:
        np.testing.assert_allclose(table[col], fold[col])
    # each null set's own fraction per kept bin; fold changes over the pooled dot fractions
    kept = np.round(table["bin_start_um"].to_numpy() / 5).astype(int)
    per_set = np.array(
        [
            np.bincount(np.floor(dots[sets == j] / 5).astype(int), minlength=100)[kept] / n
            for j in range(s)
        ]
    )
    curves = np.vstack([table["fraction_cells"], per_set])
    central = central_curves(table["fraction_cells"], per_set, 0.05)
    frac_dots = table["fraction_dots"].to_numpy()
    np.testing.assert_allclose(table["envelope_low"], curves[central].min(axis=0) / frac_dots)
    np.testing.assert_allclose(table["envelope_high"], curves[central].max(axis=0) / frac_dots)
    np.testing.assert_allclose(test.pointwise_low, np.quantile(per_set, 0.025, axis=0))
    np.testing.assert_allclose(
        table["pointwise_high"], np.quantile(per_set, 0.975, axis=0) / frac_dots
    )
    p, _ = reference_erl(table["fraction_cells"], per_set)
    assert test.p_value == pytest.approx(p) and test.n_sets == s
    assert set(table["outside"]) <= {"", "above", "below"}


def test_planted_cells_leave_the_envelope_in_the_first_bin():
    rng = np.random.default_rng(1)
    n, s = 200, 39
    dots = rng.uniform(0, 50, n * s)
    cells = np.concatenate([rng.uniform(0, 5, 60), rng.uniform(0, 50, n - 60)])
    table, test = monte_carlo_envelope(cells, dots, np.repeat(np.arange(s), n))
    assert test.p_value == pytest.approx(1 / 40)
    first = table.iloc[0]
    assert first["outside"] == "above" and first["fold_change"] > first["envelope_high"]
    assert first["envelope_low"] < 1 < first["envelope_high"]


def test_monte_carlo_envelope_refuses_unusable_null_sets():
    rng = np.random.default_rng(2)
    cells, dots = rng.uniform(0, 20, 10), rng.uniform(0, 20, 190)
    sets = np.repeat(np.arange(19), 10)
    bad = sets.copy()
    bad[0] = 1  # null set 0 now has 9 dots, null set 1 has 11
    with pytest.raises(NicheError, match="Null set 0 holds 9 random cells but there are 10"):
        monte_carlo_envelope(cells, dots, bad)
    with pytest.raises(NicheError, match="at least 19 null sets, got 18"):
        monte_carlo_envelope(cells, dots[:180], sets[:180])
    with pytest.raises(NicheError, match="at least 99 null sets"):
        monte_carlo_envelope(cells, dots, sets, alpha=0.01)
    with pytest.raises(NicheError, match="null set number"):
        monte_carlo_envelope(cells, dots, sets[:-1])
    with pytest.raises(NicheError, match="No distance bin"):
        monte_carlo_envelope(cells, dots, sets, min_dots=1000)


# -- calibration at the level of distances ----------------------------------------------------
@pytest.mark.parametrize("n_sets", [19, 39])
def test_null_p_values_are_uniform(n_sets):
    # Cells and null sets drawn from one distribution: exchangeable, so the Monte Carlo
    # p-value is (discrete) uniform on {1, ..., s + 1} / (s + 1), conservative under ties.
    seeds, n = 400, 50
    p = np.empty(seeds)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        cells, dots, sets = _null_sets(rng, n, n_sets, lambda g, m: g.gamma(2.0, 6.0, m))
        p[seed] = monte_carlo_envelope(cells, dots, sets)[1].p_value
    # Binomial(400, 0.05) lies in 8 .. 33 with probability 0.997; a test rejecting 15% of
    # null runs passes with probability 4e-5, one rejecting 1% with probability 0.05.
    rejections = int((p <= 0.05).sum())
    assert 8 <= rejections <= 33, rejections
    for level in (0.25, 0.5, 0.75):  # the CDF of a uniform, within 3.5 binomial SDs
        sd = np.sqrt(level * (1 - level) / seeds)
        assert abs(np.mean(p <= level + 1e-9) - level) < 3.5 * sd, level
    # the p-values' ranks look uniform (a continuous KS on a fine discrete grid)
    assert stats.kstest(p - 0.5 / (n_sets + 1), "uniform").pvalue > 0.001


@pytest.mark.parametrize("n_sets", [19, 39])
def test_shifted_cells_get_the_smallest_possible_p(n_sets):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 100
        cells = rng.gamma(2.0, 3.0, n)  # closer than the null sets
        dots = rng.gamma(2.0, 6.0, n * n_sets)
        _, test = monte_carlo_envelope(cells, dots, np.repeat(np.arange(n_sets), n))
        assert test.p_value == pytest.approx(1 / (n_sets + 1)), seed
        assert test.rejected


# -- GET's p-interval and one-sided tests -----------------------------------------------------
def reference_p_interval(observed, simulated, alternative="two-sided"):
    """GET's extreme-rank p-interval (type "rank"): from the definition, by counting.

    Liberal: null curves with a strictly smaller extreme rank / (s + 1); conservative:
    (1 + null curves with a smaller or equal one) / (s + 1) (GET's estimate_p_value with
    ties "liberal" and "conservative").
    """
    _, sorted_ranks = reference_erl(observed, simulated, alternative)
    k = [t[0] for t in sorted_ranks]
    n = len(k)
    return sum(r < k[0] for r in k[1:]) / n, (1 + sum(r <= k[0] for r in k[1:])) / n


def _hand_set():
    # 19 null curves over 2 bins: null curve j has value j + 1 in bin 0 and 19 - j in bin
    # 1 (so 1..19, no ties), the observed curve is given per test.
    j = np.arange(19, dtype=float)
    return np.column_stack([j + 1, 19 - j])


@pytest.mark.parametrize(
    ("observed", "alternative", "p", "interval", "outside"),
    [
        # 20 curves. Observed (20, 9.5): ranks from below (20, 10), from above (1, 11).
        # Null j: from below (j + 1, 20 - j) for j <= 9, (j + 1, 19 - j) for j >= 10.
        # Two-sided (min of both): observed sorted (1, 10); null 0 (1, 1), null 18
        # (1, 2); every other null curve's smallest rank is >= 2. Three curves at least
        # as extreme: p = 3/20; none with a smaller extreme rank, two with an equal one:
        # interval [0, 3/20].
        ([20.0, 9.5], "two-sided", 3 / 20, (0.0, 3 / 20), [0, 0]),
        # greater (ranks from above): observed (1, 11); null 0 (20, 1) -> (1, 20); every
        # other null curve >= 2. Only the observed is at least as extreme as itself:
        # p = 1/20; interval [0, 2/20] (null 0 ties the extreme rank 1). It lies above
        # the envelope in bin 0 only (bin 1: 9.5 is inside).
        ([20.0, 9.5], "greater", 1 / 20, (0.0, 2 / 20), [1, 0]),
        # less (ranks from below): observed (20, 10) -> (10, 20). Null j's smallest rank
        # is j + 1 (j <= 9) or 19 - j (j >= 10): 18 null curves below 10, and null 9 is
        # (10, 11), lexicographically smaller than (10, 20). All 19 are more extreme:
        # p = 20/20; interval [18/20, 20/20].
        ([20.0, 9.5], "less", 1.0, (18 / 20, 1.0), [0, 0]),
        # less, observed (9.5, 0): lowest in bin 1, ranks from below (10, 1) -> (1, 10);
        # null 0 (1, 20) ties the extreme rank, every other null curve >= 2: p = 1/20,
        # interval [0, 2/20]; below the envelope in bin 1, and never "above" anywhere.
        ([9.5, 0.0], "less", 1 / 20, (0.0, 2 / 20), [0, -1]),
    ],
)
def test_one_and_two_sided_by_hand(observed, alternative, p, interval, outside):
    sims = _hand_set()
    t = global_envelope_test(observed, sims, alpha=0.05, alternative=alternative)
    assert t.alternative == alternative
    assert t.p_value == pytest.approx(p)
    assert t.p_interval == (pytest.approx(interval[0]), pytest.approx(interval[1]))
    assert list(t.outside) == outside
    ref_p, _ = reference_erl(observed, sims, alternative)
    assert ref_p == pytest.approx(p)
    assert reference_p_interval(observed, sims, alternative) == pytest.approx(interval)
    if alternative == "greater":
        assert np.all(t.low == -np.inf) and np.all(np.isfinite(t.high))
        assert np.all(t.pointwise_low == -np.inf)
        np.testing.assert_allclose(t.pointwise_high, np.quantile(sims, 0.95, axis=0))
    elif alternative == "less":
        assert np.all(t.high == np.inf) and np.all(np.isfinite(t.low))
        np.testing.assert_allclose(t.pointwise_low, np.quantile(sims, 0.05, axis=0))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("integer", [False, True])
def test_p_value_and_interval_match_the_definition(alternative, integer):
    rng = np.random.default_rng(21)
    for case in range(25):
        s, k = int(rng.choice([19, 24, 39])), int(rng.integers(1, 5))
        if integer:
            sims = rng.integers(0, 4, size=(s, k)).astype(float)
            obs = rng.integers(0, 4, size=k).astype(float)
        else:
            sims = rng.normal(size=(s, k))
            obs = rng.normal(size=k) + (case % 3 - 1) * 1.5
        t = global_envelope_test(obs, sims, alternative=alternative)
        p, sorted_ranks = reference_erl(obs, sims, alternative)
        assert t.p_value == pytest.approx(p), case
        assert t.extreme_rank == sorted_ranks[0][0]
        lo, hi = reference_p_interval(obs, sims, alternative)
        assert t.p_interval == (pytest.approx(lo), pytest.approx(hi)), case
        assert t.p_interval[0] <= t.p_value <= t.p_interval[1]


def test_one_sided_leaves_the_envelope_only_on_its_side():
    rng = np.random.default_rng(4)
    for case in range(100):
        sims = rng.normal(size=(39, 5))
        obs = rng.normal(size=5)
        obs[case % 5] += 3.0 * (1 if case % 2 else -1)
        for alt, side in (("greater", 1), ("less", -1)):
            t = global_envelope_test(obs, sims, alternative=alt)
            assert set(t.outside) <= {0, side}
            assert bool(np.any(t.outside != 0)) == (t.p_value <= 0.05), (case, alt)


def test_monte_carlo_envelope_one_sided_tables():
    rng = np.random.default_rng(1)
    n, s = 200, 39
    dots = rng.uniform(0, 50, n * s)
    cells = np.concatenate([rng.uniform(0, 5, 60), rng.uniform(0, 50, n - 60)])
    sets = np.repeat(np.arange(s), n)
    up, t_up = monte_carlo_envelope(cells, dots, sets, alternative="greater")
    assert t_up.alternative == "greater"
    assert np.all(up["envelope_low"] == -np.inf) and np.all(up["pointwise_low"] == -np.inf)
    assert set(up["outside"]) <= {"", "above"}
    # The cells' excess in bin 0 is paid for by a deficit in the other bins (fractions
    # sum to 1). Two-sided, that deficit makes the cells the lowest curve in many bins
    # and the most extreme of all (p = 1/40); one-sided "greater" only sees bin 0, where
    # it shares rank 1 with the null curves that are the highest in some other bin, and
    # ERL's tie-break by the next ranks favours them: p = 0.25.
    assert t_up.p_value == pytest.approx(10 / 40)
    assert up.iloc[0]["fold_change"] > up.iloc[0]["envelope_high"] or t_up.p_value > 0.05
    down, t_down = monte_carlo_envelope(cells, dots, sets, alternative="less")
    assert np.all(down["envelope_high"] == np.inf)
    assert set(down["outside"]) <= {"", "below"}
    with pytest.raises(NicheError, match="alternative"):
        monte_carlo_envelope(cells, dots, sets, alternative="closer")
    # GET's R spelling is accepted
    assert global_envelope_test([0.0], np.arange(19.0)[:, None], alternative="two.sided")
