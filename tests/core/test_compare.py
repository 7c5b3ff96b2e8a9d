"""Replicate, contingency and between-condition tests against hand-computed answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from napari_niche.core import (
    STAT_COLUMNS,
    NicheError,
    cells_vs_dots_tests,
    compare_conditions,
    distance_tests,
    holm,
    quadrant_contingency,
    rank_biserial,
    replicate_bin_tests,
    replicate_fractions,
    replicate_quadrant_tests,
)
from napari_niche.core.compare import smallest_mann_whitney_p


def table(rows, **const):
    """A per-object table from (replicate, d_vessel, d_bone) tuples."""
    t = pd.DataFrame(rows, columns=["replicate", "dist_vessel_um", "dist_bone_um"])
    return t.assign(**const)


def test_rank_biserial_is_the_probability_difference():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 12).astype(float), rng.integers(0, 5, 9).astype(float)
    u = stats.mannwhitneyu(x, y).statistic
    greater = np.mean(x[:, None] > y[None, :])
    less = np.mean(x[:, None] < y[None, :])
    assert rank_biserial(u, x.size, y.size) == pytest.approx(greater - less)
    assert rank_biserial(0, 3, 4) == -1 and rank_biserial(12, 3, 4) == 1
    assert rank_biserial(6, 3, 4) == 0


def test_holm_by_hand():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> 0.06
    got = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_smallest_mann_whitney_p():
    assert smallest_mann_whitney_p(3, 3) == pytest.approx(0.1)
    assert smallest_mann_whitney_p(4, 4) == pytest.approx(2 / 70)
    assert smallest_mann_whitney_p(2, 2) == pytest.approx(1 / 3)
    assert smallest_mann_whitney_p(1, 1) == 1.0  # 2 / C(2, 1), capped


def test_exact_mann_whitney_for_few_replicates():
    from napari_niche.core.compare import _mann_whitney

    rng = np.random.default_rng(2)
    for n1, n2 in ((3, 3), (4, 5), (8, 8)):
        x, y = rng.normal(size=n1), rng.normal(size=n2)  # no ties: scipy's exact test
        u, p, r = _mann_whitney(x, y)
        ref = stats.mannwhitneyu(x, y, method="exact")
        assert (u, p) == (ref.statistic, pytest.approx(ref.pvalue))
        assert r == pytest.approx(rank_biserial(u, n1, n2))
    # ties and tiny groups: enumerated by hand
    # x = [0, 0] vs y = [1]: average ranks 1.5, 1.5, 3; of the 3 splits only the observed
    # one has |U - 1| >= 1 (the other two give U = 1.5), so p = 1/3
    assert _mann_whitney([0.0, 0.0], [1.0])[:2] == (0.0, pytest.approx(1 / 3))
    assert _mann_whitney([0.5], [0.2])[:2] == (1.0, 1.0)  # 1 vs 1: nothing to test
    assert _mann_whitney([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])[1] == 1.0  # all tie
    u, p, r = _mann_whitney([np.nan, 1.0], [])
    assert np.isnan(p) and np.isnan(r)


def test_cells_vs_dots_is_distance_tests_in_the_common_format():
    rng = np.random.default_rng(1)
    cells = table([("a", d, 1.0) for d in rng.exponential(3, 80)])
    dots = table([("a", d, 1.0) for d in rng.exponential(8, 300)])
    got = cells_vs_dots_tests(cells, dots, structure="vessel", condition="B-ALL")
    assert list(got.columns) == STAT_COLUMNS
    ref = distance_tests(cells["dist_vessel_um"], dots["dist_vessel_um"])
    np.testing.assert_allclose(got["p_value"], ref["p_value"])
    np.testing.assert_allclose(got["statistic"], ref["statistic"])
    assert list(got["analysis"]) == ["cells vs dots"] * 2
    assert list(got["condition"]) == ["B-ALL"] * 2 and list(got["structure"]) == ["vessel"] * 2
    assert list(got["n_cells"]) == [80, 80] and list(got["n_dots"]) == [300, 300]
    assert list(got["effect_size_name"]) == ["KS D", "rank-biserial correlation"]
    assert got["effect_size"].iloc[1] < -0.3  # cells closer than dots
    np.testing.assert_allclose(got["p_adjusted"], got["p_value"])
    assert list(got["correction"]) == ["", ""]
    with pytest.raises(NicheError, match="dist_nestin_um"):
        cells_vs_dots_tests(cells, dots, structure="nestin")


def test_replicate_fractions_by_hand():
    cells = table([("m1", 1.0, 0), ("m1", 6.0, 0), ("m2", 2.0, 0)])
    dots = table([("m1", 1.0, 0), ("m1", 11.0, 0), ("m2", 7.0, 0), ("m2", 8.0, 0)])
    f = replicate_fractions(cells, dots, structure="vessel", bin_width_um=5)
    assert list(f["replicate"]) == ["m1"] * 3 + ["m2"] * 3
    assert list(f["bin_start_um"]) == [0, 5, 10] * 2
    assert list(f["n_cells"]) == [1, 1, 0, 1, 0, 0]
    assert list(f["n_dots"]) == [1, 0, 1, 0, 2, 0]
    np.testing.assert_allclose(f["fraction_cells"], [0.5, 0.5, 0, 1, 0, 0])
    np.testing.assert_allclose(f["fraction_dots"], [0.5, 0, 0.5, 0, 1, 0])
    # no dots in the bin: NaN, never infinity
    np.testing.assert_allclose(f["fold_change"], [1, np.nan, 0, np.nan, 0, np.nan])
    with pytest.raises(NicheError, match="'mouse' column"):
        replicate_fractions(cells, dots, structure="vessel", replicate="mouse")


def test_replicate_bins_three_vs_three_cannot_reach_005():
    # Every replicate has all its cells in [0, 5) and a third of its dots there: the
    # strongest possible separation of 3 vs 3 values, and still p = 0.1 (exact).
    cells, dots = [], []
    for m in ("m1", "m2", "m3"):
        cells += [(m, 1.0, 0.0)] * 20
        dots += [(m, 1.0, 0.0)] * 10 + [(m, 7.0, 0.0)] * 10 + [(m, 12.0, 0.0)] * 10
    got = replicate_bin_tests(
        table(cells), table(dots), structure="vessel", bin_width_um=5, min_dots=10, condition="A"
    )
    assert list(got.columns) == STAT_COLUMNS
    assert list(got["bin_start_um"]) == [0, 5, 10]
    first = got.iloc[0]
    assert first["analysis"] == "replicate bins" and first["test"].startswith("Mann-Whitney")
    assert first["statistic"] == 9 and first["effect_size"] == 1.0
    assert first["p_value"] == pytest.approx(0.1)
    assert first["n_replicates"] == 3 and first["n_cells"] == 60 and first["n_dots"] == 90
    assert "3 vs 3 replicates; smallest possible p 0.1" in first["note"]
    assert set(got["correction"]) == {"Holm over 3 bins"}
    np.testing.assert_allclose(got["p_adjusted"], holm(got["p_value"]))
    assert (got["effect_size"].iloc[1:] == -1).all()


def test_replicate_quadrants_by_hand():
    # vessel < 10 and bone < 10 -> Q1; each replicate: cells all Q4, dots spread evenly
    cells, dots = [], []
    for m in ("m1", "m2", "m3", "m4"):
        cells += [(m, 1.0, 50.0)] * 5
        dots += [(m, 1.0, 1.0), (m, 50.0, 1.0), (m, 50.0, 50.0), (m, 1.0, 50.0)] * 3
    got = replicate_quadrant_tests(table(cells), table(dots), structures=("vessel", "bone"))
    assert list(got["quadrant"]) == ["Q1", "Q2", "Q3", "Q4"]
    assert list(got["effect_size"]) == [-1, -1, -1, 1]
    assert got["p_value"].tolist() == pytest.approx([2 / math.comb(8, 4)] * 4)
    assert set(got["correction"]) == {"Holm over 4 quadrants"}
    assert got["note"].iloc[3].startswith("Q4 = near vessel only (< 10 µm)")
    assert (got["structure"] == "").all() and (got["n_replicates"] == 4).all()


def test_quadrant_contingency_by_hand():
    # cells: Q1 6, Q2 2, Q3 2, Q4 10 ; dots: 10 in each quadrant
    q = {"Q1": (1, 1), "Q2": (50, 1), "Q3": (50, 50), "Q4": (1, 50)}
    counts_c = {"Q1": 6, "Q2": 2, "Q3": 2, "Q4": 10}
    cells = table([("a", *q[k]) for k, n in counts_c.items() for _ in range(n)])
    dots = table([("a", *q[k]) for k in q for _ in range(10)])
    got = quadrant_contingency(cells, dots, structures=("vessel", "bone"), condition="A")
    assert list(got["quadrant"]) == ["all", "Q1", "Q2", "Q3", "Q4"]
    observed = np.array([[6, 2, 2, 10], [10, 10, 10, 10]])
    expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / observed.sum()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    chi = got.iloc[0]
    assert chi["test"] == "chi-square test of independence (2x4)"
    assert chi["statistic"] == pytest.approx(chi2)
    assert chi["p_value"] == pytest.approx(stats.chi2.sf(chi2, 3))
    assert chi["effect_size"] == pytest.approx(np.sqrt(chi2 / 60))
    assert chi["effect_size_name"] == "Cramer's V" and chi["correction"] == ""
    q4 = got.iloc[4]  # 10 of 20 cells vs 10 of 40 dots: odds (10/10) / (10/30) = 3
    assert q4["test"] == "Fisher exact (two-sided)" and q4["effect_size"] == pytest.approx(3.0)
    assert q4["p_value"] == pytest.approx(stats.fisher_exact([[10, 10], [10, 30]]).pvalue)
    assert set(got["correction"].iloc[1:]) == {"Holm over 4 quadrants"}
    np.testing.assert_allclose(got["p_adjusted"].iloc[1:], holm(got["p_value"].iloc[1:]))
    assert (got["n_cells"] == 20).all() and (got["n_dots"] == 40).all()
    with pytest.raises(NicheError, match="two different structures"):
        quadrant_contingency(cells, dots, structures=("vessel", "vessel"))


def _conditions(rng, shift=0.0):
    rows = []
    for cond, scale, reps in (("A", 4.0, 3), ("B", 4.0 + shift, 3), ("C", 4.0, 4)):
        for r in range(reps):
            for d in rng.exponential(scale, 60):
                rows.append((cond, f"{cond}{r}", d))
    return pd.DataFrame(rows, columns=["condition", "replicate", "dist_vessel_um"])


def test_compare_conditions_every_pair():
    rng = np.random.default_rng(4)
    cells = _conditions(rng, shift=8.0)
    got = compare_conditions(cells, structure="vessel", bin_width_um=5, min_cells=10)
    assert list(got.columns) == STAT_COLUMNS
    pairs = got[got["analysis"] == "conditions"][["condition", "versus"]]
    assert pairs.values.tolist() == [["A", "B"], ["A", "C"], ["B", "C"]]
    ab = got[(got["condition"] == "A") & (got["versus"] == "B")]
    ks = ab.iloc[0]
    a = cells.loc[cells.condition == "A", "dist_vessel_um"]
    b = cells.loc[cells.condition == "B", "dist_vessel_um"]
    ref = stats.ks_2samp(a, b)
    assert ks["statistic"] == pytest.approx(ref.statistic) and ks["p_value"] < 1e-6
    assert ks["effect_size_name"] == "KS D" and ks["n_cells"] == 180
    assert ks["n_cells_versus"] == 180 and ks["n_replicates"] == 3
    assert ks["n_replicates_versus"] == 3 and ks["n_dots"] == 0
    every = ab[ab["analysis"] == "conditions bins"]
    bins = every[every["p_value"].notna()]
    assert len(bins) >= 3
    assert set(bins["correction"]) == {f"Holm over {len(bins)} bins"}
    # sparse bins are kept, not run, with the count and the rule; every bin up to the
    # pair's farthest cell has a row
    d_ab = cells.loc[cells.condition.isin(["A", "B"]), "dist_vessel_um"]
    counts = np.bincount(np.floor(d_ab / 5).astype(int))
    np.testing.assert_array_equal(every["bin_start_um"], 5.0 * np.arange(counts.size))
    sparse = every[every["p_value"].isna()]
    assert len(sparse) == (counts < 10).sum() > 0
    assert (sparse["correction"] == "").all() and sparse["p_adjusted"].isna().all()
    k = int(sparse["bin_start_um"].iloc[0] // 5)
    assert sparse["note"].iloc[0] == (
        f"not run: fewer than 10 cells in the bin across both conditions ({counts[k]})"
    )
    first = bins.iloc[0]  # A has more cells in [0, 5) than B in every replicate
    assert first["bin_start_um"] == 0 and first["effect_size"] == 1.0
    assert first["p_value"] == pytest.approx(0.1)
    assert "3 vs 3 replicates; smallest possible p 0.1" in first["note"]
    ac = got[(got["condition"] == "A") & (got["versus"] == "C")]
    assert "3 vs 4 replicates" in ac.iloc[1]["note"]


def test_compare_conditions_with_one_replicate_in_a_condition():
    rng = np.random.default_rng(6)
    rows = [("A", f"a{r}", d) for r in range(2) for d in rng.exponential(4, 50)]
    rows += [("B", "b0", d) for d in rng.exponential(9, 50)]
    cells = pd.DataFrame(rows, columns=["condition", "replicate", "dist_vessel_um"])
    got = compare_conditions(cells, structure="vessel")
    # 2 vs 1 replicates: the per-replicate bins are one "not run" row, not p-values
    bins = got[got["analysis"] == "conditions bins"]
    assert len(bins) == 1 and bins["p_value"].isna().all() and bins["p_adjusted"].isna().all()
    expected = "not run: needs at least 2 replicates in each condition, have 2 (A) and 1 (B)"
    assert bins["note"].iloc[0].startswith(expected)
    assert (bins["n_replicates"].iloc[0], bins["n_replicates_versus"].iloc[0]) == (2, 1)
    ks = got.iloc[0]
    assert ks["p_value"] < 1e-3  # the pooled KS still sees the difference
    assert "B pools cells of n = 1 replicate" in ks["note"]


def test_compare_conditions_one_replicate_each_compares_two_animals():
    rng = np.random.default_rng(7)
    rows = [("A", "a0", d) for d in rng.exponential(4, 60)]
    rows += [("B", "b0", d) for d in rng.exponential(4, 60)]
    cells = pd.DataFrame(rows, columns=["condition", "replicate", "dist_vessel_um"])
    got = compare_conditions(cells, structure="vessel")
    assert got["analysis"].tolist() == ["conditions", "conditions bins"]
    expected = (
        "pools cells of n = 1 replicate per condition: a difference between two animals, "
        "not between conditions"
    )
    assert got["note"].iloc[0].endswith(expected)
    assert np.isnan(got["p_value"].iloc[1]) and "have 1 (A) and 1 (B)" in got["note"].iloc[1]
    # two replicates each: every bin gets a row again, and the KS note says nothing more
    rows += [("A", "a1", d) for d in rng.exponential(4, 60)]
    rows += [("B", "b1", d) for d in rng.exponential(4, 60)]
    cells = pd.DataFrame(rows, columns=["condition", "replicate", "dist_vessel_um"])
    got = compare_conditions(cells, structure="vessel")
    assert "n = 1" not in got["note"].iloc[0]
    tested = got[(got["analysis"] == "conditions bins") & got["p_value"].notna()]
    assert len(tested) >= 2 and tested["note"].str.contains("2 vs 2 replicates").all()


def test_compare_conditions_needs_two():
    rng = np.random.default_rng(5)
    cells = _conditions(rng)
    one = compare_conditions(cells[cells.condition == "A"], structure="vessel")
    assert list(one.columns) == STAT_COLUMNS and len(one) == 0
    with pytest.raises(NicheError, match="'group' column"):
        compare_conditions(cells, structure="vessel", condition="group")
