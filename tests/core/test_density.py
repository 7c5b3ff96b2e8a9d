"""The density ratio against known densities: identity, a planted step, reflection at 0."""

import numpy as np
import pytest

from napari_niche.core import NicheError, density_ratio
from napari_niche.core.density import DENSITY_COLUMNS, MIN_BANDWIDTH_UM, silverman_bandwidth


def test_reflection_keeps_the_density_right_at_zero():
    # Uniform on [0, 40]: density 1/40 everywhere, also at 0, where a plain Gaussian
    # kernel would give half of that. Integrates to ~1 over the support.
    x = np.linspace(0, 40, 40001)
    t = density_ratio(x, x, bandwidth_um=1.0, max_distance_um=30, n_boot=0)
    np.testing.assert_allclose(t["cell_density"], 1 / 40, rtol=0.01)
    np.testing.assert_allclose(t["ratio"], 1.0)
    assert t["low"].isna().all() and list(t.columns) == DENSITY_COLUMNS
    # a point mass at 0 (cells touching the structure) is a half-Gaussian of mass 1
    zeros = density_ratio(np.zeros(10), x, bandwidth_um=2.0, max_distance_um=20, n_boot=0)
    expected = 2 * np.exp(-0.5 * (zeros["distance_um"] / 2.0) ** 2) / (2.0 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(zeros["cell_density"], expected, rtol=1e-3, atol=1e-9)
    step = zeros["distance_um"].diff().iloc[1]
    area = np.sum(zeros["cell_density"]) * step - zeros["cell_density"].iloc[0] * step / 2
    assert area == pytest.approx(1.0, abs=0.01)


def test_bandwidth_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(20, 5, 1000)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    expected = 0.9 * min(x.std(ddof=1), iqr / 1.34) * 1000 ** (-0.2)
    assert silverman_bandwidth(x) == pytest.approx(expected)
    assert silverman_bandwidth(np.zeros(50)) == MIN_BANDWIDTH_UM
    t = density_ratio(x, rng.normal(20, 5, 5000), n_boot=10)
    assert t.attrs["bandwidth_um"] == pytest.approx(expected)
    assert t.attrs["n_cells"] == 1000 and t.attrs["n_dots"] == 5000


def test_identical_distributions_give_one_with_a_band_covering_it():
    # One shared bandwidth: the smoothing bias cancels in the ratio even where the
    # density bends sharply (gamma(2): zero density at 0). With rhohat's default of
    # separate bandwidths it does not there, see test_separate_and_shared_bandwidths.
    cover = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        cells, dots = rng.gamma(2, 5, 400), rng.gamma(2, 5, 8000)
        t = density_ratio(cells, dots, n_boot=200, rng=seed, shared_bandwidth=True)
        assert t["distance_um"].iloc[-1] == pytest.approx(np.quantile(dots, 0.95))
        assert (t["low"] <= t["ratio"]).all() and (t["ratio"] <= t["high"]).all()
        inner = t[t["distance_um"] < 15]
        assert np.abs(inner["ratio"] - 1).max() < 0.35
        cover.append(((t["low"] <= 1) & (t["high"] >= 1)).to_numpy()[[0, 50, 100, 150]])
    # pointwise 95% bands: at four fixed distances, 30 seeds each -> about 95% coverage
    # (0.94 measured over 60 seeds; 0.85 is 4 binomial SDs below 0.95)
    assert 0.85 <= np.mean(cover) <= 1.0


def test_planted_step_is_recovered():
    # Dots uniform on [0, 30]; cells twice as likely as dots below 5 µm: the true ratio
    # is 2 / c below 5 and 1 / c beyond, c = 2 * 5/30 + 25/30 (so the cells' density
    # integrates to 1).
    rng = np.random.default_rng(2)
    dots = rng.uniform(0, 30, 100_000)
    weight = np.where(dots < 5, 2.0, 1.0)
    cells = rng.choice(dots, size=3000, p=weight / weight.sum(), replace=False)
    t = density_ratio(cells, dots, bandwidth_um=1.0, n_boot=300, rng=0)
    c = 2 * 5 / 30 + 25 / 30
    truth = np.where(t["distance_um"] < 5, 2 / c, 1 / c)
    away = np.abs(t["distance_um"] - 5) > 3  # the kernel blurs the step over ~3 bandwidths
    inside = (t["low"] <= truth) & (truth <= t["high"])
    assert inside[away].mean() >= 0.85
    near, far = t[t["distance_um"] < 2], t[(t["distance_um"] > 8) & (t["distance_um"] < 25)]
    assert near["ratio"].mean() == pytest.approx(2 / c, rel=0.1)
    assert far["ratio"].mean() == pytest.approx(1 / c, rel=0.05)
    assert (near["low"] > 1).all() and (far["high"] < 1.2).all()


def test_seeded():
    # its speed on these inputs is measured in benchmarks/bench_test_timings.py
    rng = np.random.default_rng(3)
    cells, dots = rng.exponential(10, 5000), rng.exponential(10, 1_000_000)
    a = density_ratio(cells, dots, rng=7)
    b = density_ratio(cells, dots, rng=7)
    np.testing.assert_array_equal(a["low"], b["low"])
    c = density_ratio(cells, dots, rng=8)
    assert not np.array_equal(a["low"], c["low"])


def test_bad_input():
    with pytest.raises(NicheError, match="No cell distances"):
        density_ratio([], [1.0])
    with pytest.raises(NicheError, match="non-negative"):
        density_ratio([-1.0], [1.0])
    with pytest.raises(NicheError, match="bandwidth"):
        density_ratio([1.0], [1.0], bandwidth_um=0)
    with pytest.raises(NicheError, match="level"):
        density_ratio([1.0], [1.0], level=1.5)


# -- bandwidths: each sample its own (rhohat's default), one shared, or given -----------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_smooth_distribution_gives_one_with_separate_bandwidths(seed):
    rng = np.random.default_rng(seed)
    cells, dots = rng.exponential(10, 3000), rng.exponential(10, 60_000)
    t = density_ratio(cells, dots, n_boot=0)
    assert t.attrs["bandwidth_um"] == pytest.approx(silverman_bandwidth(cells))
    assert t.attrs["reference_bandwidth_um"] == pytest.approx(silverman_bandwidth(dots))
    assert t.attrs["reference_bandwidth_um"] < t.attrs["bandwidth_um"]  # 20x the sample
    assert "separately" in t.attrs["bandwidth_rule"]
    inner = t[(t["distance_um"] > 3) & (t["distance_um"] < 25)]
    assert np.abs(inner["ratio"] - 1).max() < 0.15


def test_exponential_cells_against_uniform_reference_known_ratio():
    # Cells Exp(mean 10) truncated to [0, 60], reference uniform on [0, 60]: the true
    # ratio is 60 exp(-d / 10) / (10 (1 - exp(-6))).
    rng = np.random.default_rng(4)
    cells = rng.exponential(10, 40_000)
    cells = cells[cells < 60]
    dots = rng.uniform(0, 60, 100_000)
    t = density_ratio(cells, dots, n_boot=0)
    d = t["distance_um"].to_numpy()
    truth = 60 * np.exp(-d / 10) / (10 * (1 - np.exp(-6)))
    away = (d > 3) & (d < 30)  # reflection at 0 is exact only for a flat density
    np.testing.assert_allclose(t["ratio"][away], truth[away], rtol=0.1)
    np.testing.assert_allclose(t["dot_density"][away], 1 / 60, rtol=0.05)


def test_separate_and_shared_bandwidths_differ_as_expected():
    # Identical gamma(2) samples: the density is 0 at 0 and rises linearly, so near 0 a
    # reflected kernel estimate is proportional to its bandwidth. One shared bandwidth:
    # the ratio at 0 is ~1. Each its own (rhohat's default): ~ h_cells / h_reference.
    rng = np.random.default_rng(6)
    cells, dots = rng.gamma(2, 5, 4000), rng.gamma(2, 5, 200_000)
    sep = density_ratio(cells, dots, n_boot=0)
    shared = density_ratio(cells, dots, n_boot=0, shared_bandwidth=True)
    h, h_ref = sep.attrs["bandwidth_um"], sep.attrs["reference_bandwidth_um"]
    assert h_ref < h and shared.attrs["reference_bandwidth_um"] == h
    assert shared.attrs["bandwidth_rule"].startswith("one bandwidth")
    # the cells' density is the same either way (up to the fine binning, a 40th of the
    # smaller bandwidth); only the reference's changes
    np.testing.assert_allclose(sep["cell_density"], shared["cell_density"], rtol=1e-3)
    assert sep["ratio"].iat[0] == pytest.approx(h / h_ref, rel=0.1)
    assert shared["ratio"].iat[0] == pytest.approx(1.0, abs=0.1)
    # away from the bend both agree with 1
    mid = (sep["distance_um"] > 8) & (sep["distance_um"] < 20)
    np.testing.assert_allclose(sep["ratio"][mid], 1.0, atol=0.1)
    np.testing.assert_allclose(shared["ratio"][mid], 1.0, atol=0.1)
    # the reference density is the reference smoothed alone with its own bandwidth
    alone = density_ratio(dots, dots, bandwidth_um=h_ref, n_boot=0)
    np.testing.assert_allclose(sep["dot_density"], alone["dot_density"], rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "cells_h", "ref_h"),
    [
        ({"bandwidth_um": 2.0}, 2.0, 2.0),  # one given value serves both (bwref = bw)
        ({"reference_bandwidth_um": 3.0}, None, 3.0),
        ({"bandwidth_um": 2.0, "reference_bandwidth_um": 0.5}, 2.0, 0.5),
        ({"bandwidth_um": 2.0, "shared_bandwidth": True}, 2.0, 2.0),
    ],
)
def test_bandwidths_set_by_the_user(kwargs, cells_h, ref_h):
    rng = np.random.default_rng(7)
    cells, dots = rng.gamma(2, 5, 500), rng.gamma(2, 5, 5000)
    t = density_ratio(cells, dots, n_boot=10, **kwargs)
    expected = silverman_bandwidth(cells) if cells_h is None else cells_h
    assert t.attrs["bandwidth_um"] == pytest.approx(expected)
    assert t.attrs["reference_bandwidth_um"] == pytest.approx(ref_h)
    with pytest.raises(NicheError, match="reference bandwidth"):
        density_ratio(cells, dots, reference_bandwidth_um=-1.0)
