"""The project's tests and estimators against stored reference values (docs/conventions.md).

The values in tests/data/golden_*.json come from ``tools/make_golden.py``, which computes
them from the definitions (ERL ranks counted one by one, Fisher's test by enumerating the
hypergeometric in exact fractions, the KS and Mann-Whitney null distributions by
enumerating every split, Holm's rule step by step) without importing napari_niche. A
change of convention in the project makes these tests fail until the page and the files
are updated together.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_niche.core import global_envelope_test
from napari_niche.core.compare import _mann_whitney, holm, quadrant_contingency
from napari_niche.core.stats import KS, MWU, distance_tests

DATA = Path(__file__).resolve().parents[1] / "data"
REL = 1e-9


def golden(name):
    return json.loads((DATA / f"golden_{name}.json").read_text())


@pytest.mark.parametrize(
    "case", golden("envelope"), ids=lambda c: f"{c['name']}-{c['alternative']}"
)
def test_global_envelope_test_equals_the_erl_definition(case):
    t = global_envelope_test(
        case["observed"], np.array(case["simulated"]), alternative=case["alternative"]
    )
    assert t.p_value == pytest.approx(case["p_value"], rel=REL)
    assert t.p_interval == pytest.approx(tuple(case["p_interval"]), rel=REL, abs=1e-15)
    assert t.extreme_rank == pytest.approx(case["extreme_rank"], rel=REL)


def _quadrant_table(counts):
    """Objects with vessel / bone distances falling into Q1..Q4 (threshold 10 µm) as given."""
    where = {"Q1": (5.0, 5.0), "Q2": (20.0, 5.0), "Q3": (20.0, 20.0), "Q4": (5.0, 20.0)}
    rows = [
        where[q] for q, n in zip(("Q1", "Q2", "Q3", "Q4"), counts, strict=True) for _ in range(n)
    ]
    return pd.DataFrame(rows, columns=["dist_vessel_um", "dist_bone_um"])


@pytest.mark.parametrize("case", golden("contingency"), ids=lambda c: str(c["cells"]))
def test_quadrant_chi_square_and_fisher_equal_their_definitions(case):
    out = quadrant_contingency(
        _quadrant_table(case["cells"]),
        _quadrant_table(case["dots"]),
        structures=("vessel", "bone"),
        threshold_um=10.0,
    )
    chi = out[out["quadrant"] == "all"].iloc[0]
    ref = case["chi_square"]
    assert chi["statistic"] == pytest.approx(ref["statistic"], rel=REL)  # no Yates
    assert chi["p_value"] == pytest.approx(ref["p_value"], rel=REL)
    assert chi["test"].endswith(f"(2x{ref['df'] + 1})")
    for quadrant, ref_f in zip(("Q1", "Q2", "Q3", "Q4"), case.get("fisher", []), strict=False):
        row = out[out["quadrant"] == quadrant].iloc[0]
        assert row["p_value"] == pytest.approx(ref_f["p_value"], rel=REL)
        assert row["effect_size_name"] == "odds ratio"
        if math.isfinite(ref_f["odds_ratio"]):  # the sample odds ratio a d / (b c)
            assert row["effect_size"] == pytest.approx(ref_f["odds_ratio"], rel=REL)


@pytest.mark.parametrize("case", golden("ks"), ids=lambda c: c["name"])
def test_ks_equals_the_exact_distribution_or_scipy_kstwo(case):
    if "cells_grid" in case:
        start, step, n = case["cells_grid"]
        cells = start + step * np.arange(n)
        start, step, n = case["dots_grid"]
        dots = start + step * np.arange(n)
    else:
        cells, dots = np.array(case["cells"]), np.array(case["dots"])
    row = distance_tests(cells, dots).set_index("test").loc[KS]
    assert row["statistic"] == pytest.approx(case["D"], rel=REL)
    assert row["p_value"] == pytest.approx(case["p"], rel=REL)
    if "p_kolmogorov_limit" in case:  # R's asymptotic p differs: a convention, named
        assert abs(row["p_value"] - case["p_kolmogorov_limit"]) > 0.01


def test_mann_whitney_equals_enumeration_and_the_normal_formula():
    data = golden("mann_whitney")
    for case in data["exact_with_ties"]:  # the replicate-level tests
        u, p, _ = _mann_whitney(np.array(case["x"]), np.array(case["y"]))
        assert u == pytest.approx(case["U"], rel=REL, abs=1e-12)
        assert p == pytest.approx(case["p"], rel=REL)
    for case in data["normal"]:  # cells vs random cells: tie-corrected, continuity 0.5
        row = distance_tests(case["cells"], case["dots"]).set_index("test").loc[MWU]
        assert row["statistic"] == pytest.approx(case["U"], rel=REL)
        assert row["p_value"] == pytest.approx(case["p"], rel=REL)


@pytest.mark.parametrize("case", golden("holm"), ids=lambda c: str(c["p"]))
def test_holm_equals_r_p_adjust(case):
    np.testing.assert_allclose(holm(case["p"]), case["adjusted"], rtol=REL)
