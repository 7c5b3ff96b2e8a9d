"""Fold change, quadrants and two-sample tests against hand-computed answers."""

import numpy as np
import pytest

from napari_niche.core import NicheError, distance_tests, fold_change_by_bin, quadrant_table


def test_fold_change_by_hand():
    cells = [0.0, 1.0, 4.9, 7.0]  # 3 in [0,5), 1 in [5,10)
    dots = [0.5] * 10 + [6.0] * 20 + [12.0] * 5  # 10, 20, 5 dots
    t = fold_change_by_bin(cells, dots, bin_width_um=5, min_dots=10)
    # The [10,15) bin holds 5 dots < 10: left out, not 0, not inf.
    assert list(t["bin_start_um"]) == [0.0, 5.0]
    assert list(t["bin_end_um"]) == [5.0, 10.0]
    assert list(t["n_cells"]) == [3, 1] and list(t["n_dots"]) == [10, 20]
    np.testing.assert_allclose(t["fraction_cells"], [3 / 4, 1 / 4])
    np.testing.assert_allclose(t["fraction_dots"], [10 / 35, 20 / 35])
    np.testing.assert_allclose(t["fold_change"], [(3 / 4) / (10 / 35), (1 / 4) / (20 / 35)])
    assert np.all(np.isfinite(t["fold_change"]))


def test_fold_change_keeps_bins_without_cells_as_zero_when_dots_suffice():
    t = fold_change_by_bin([1.0], [1.0] * 10 + [7.0] * 10, bin_width_um=5, min_dots=10)
    assert list(t["fold_change"]) == [2.0, 0.0]


def test_fold_change_min_dots_configurable_and_bad_width():
    t = fold_change_by_bin([1.0], [1.0, 7.0, 12.0], bin_width_um=5, min_dots=1)
    assert len(t) == 3
    with pytest.raises(NicheError, match="bin width"):
        fold_change_by_bin([1.0], [1.0], bin_width_um=0)
    with pytest.raises(NicheError, match="No cell distances"):
        fold_change_by_bin([], [1.0])


def test_quadrants_by_hand():
    ca = np.array([1, 1, 20, 20, 20])  # d to vessel
    cb = np.array([1, 20, 1, 20, 20])  # d to bone
    t = quadrant_table(ca, cb, [1, 20], [20, 20], threshold_um=10, names=("vessel", "bone"))
    t = t.set_index("quadrant")
    assert t.loc["Q1", "n_cells"] == 1  # near both
    assert t.loc["Q2", "n_cells"] == 1  # near bone only
    assert t.loc["Q3", "n_cells"] == 2  # near neither
    assert t.loc["Q4", "n_cells"] == 1  # near vessel only
    assert t.loc["Q4", "n_dots"] == 1 and t.loc["Q3", "n_dots"] == 1
    assert t["fraction_cells"].sum() == pytest.approx(1.0)
    assert t.loc["Q1", "description"] == "near vessel and bone"


def test_quadrant_threshold_is_strict():
    t = quadrant_table([10.0], [9.99], [0.0], [0.0], threshold_um=10).set_index("quadrant")
    assert t.loc["Q2", "n_cells"] == 1


def test_distance_tests_report_statistic_and_n():
    rng = np.random.default_rng(0)
    same = distance_tests(rng.exponential(5, 300), rng.exponential(5, 300))
    shifted = distance_tests(rng.exponential(2, 300), rng.exponential(8, 600))
    assert list(same.columns) == [
        "test",
        "statistic",
        "p_value",
        "n_cells",
        "n_dots",
        "effect_size",
        "effect_size_name",
    ]
    assert same["p_value"].min() > 0.01
    assert shifted["p_value"].max() < 1e-6
    assert list(shifted["n_cells"]) == [300, 300] and list(shifted["n_dots"]) == [600, 600]
    ks = shifted.iloc[0]
    assert ks["test"].startswith("Kolmogorov") and 0 < ks["statistic"] <= 1
    assert ks["effect_size"] == ks["statistic"] and ks["effect_size_name"] == "KS D"
    mw = shifted.iloc[1]
    assert mw["effect_size_name"] == "rank-biserial correlation"
    assert mw["effect_size"] == pytest.approx(2 * mw["statistic"] / (300 * 600) - 1)
    assert mw["effect_size"] < -0.3  # the cells sit closer


def test_rank_biserial_by_hand():
    # cells [1, 2] vs dots [3, 4, 5]: every cell closer -> U = 0, r = -1; ties count half
    t = distance_tests([1.0, 2.0], [3.0, 4.0, 5.0])
    assert t.iloc[1]["statistic"] == 0 and t.iloc[1]["effect_size"] == -1
    t = distance_tests([3.0], [3.0, 1.0])  # P(>) = 1/2, P(=) = 1/2 -> r = 0.5
    assert t.iloc[1]["effect_size"] == pytest.approx(0.5)


def test_quadrant_of_by_hand():
    from napari_niche.core.stats import quadrant_of

    # (d_A, d_B) with t = 10: near both, near B only, neither, near A only; 10 is not near
    q = quadrant_of([1.0, 20.0, 20.0, 1.0, 10.0], [1.0, 1.0, 20.0, 20.0, 9.99], threshold_um=10)
    assert list(q) == ["Q1", "Q2", "Q3", "Q4", "Q2"]
    with pytest.raises(NicheError):
        quadrant_of([1.0], [1.0, 2.0])
