"""Pooling images into conditions: the arithmetic against numbers worked out by hand.

Two small hand-made images form condition X (replicates r1, r2), one image condition Y.
Distances are chosen so every pooled count, fraction and null-set union can be checked on
paper (bins of 5 µm, quadrant threshold 10 µm):

* X cells, vessel distances: image A [1, 2, 7], image B [3, 12] -> bins 0/1/2 hold 3/1/1
  cells, fractions 0.6 / 0.2 / 0.2.
* X null sets (20 of them): image A's set r is [1, 6, 11] for r < 10 and [6, 6, 11] for
  r >= 10; image B's set r is [2, 13] for r < 10 and [8, 13] for r >= 10. Pooled set r
  (the union of set r of A and of B) has 2/1/2 dots in bins 0/1/2 for r < 10 and 0/3/2
  for r >= 10; all 100 pooled dots: 20/40/40 (fractions 0.2 / 0.4 / 0.4).
  So the fold change is 3 / 0.5 / 0.5, and the null sets' bin-0 fractions are 0.4 (ten
  sets) and 0 (ten sets): the pointwise envelope of bin 0 is 0 .. 2 in fold change.
  Pairing set r of A with another set of B (e.g. r + 10) would give 0.2 in every set
  and a pointwise envelope 1 .. 1: the envelope tells whether the union is by index.
"""

import json

import numpy as np
import pandas as pd
import pytest

from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.experiment.pooling import (
    DENSITY_COLUMNS,
    POOLED_FILES,
    ImageResult,
    PooledResult,
    PoolingError,
    pool_results,
)
from napari_niche.niche.pipeline import analyze
from napari_niche.params import AnalysisParams

PARAMS = AnalysisParams(bin_width_um=5.0, min_dots=1, quadrant_threshold_um=10.0, seed=3)
N_SETS = 20


def _image(name, condition, replicate, cells_v, cells_b, sets_v, dots_b, *, n_sets=N_SETS):
    """An ImageResult from per-cell distances and a function r -> null set r's distances."""
    cells = pd.DataFrame(
        {
            "label": np.arange(1, len(cells_v) + 1),
            "dist_vessel_um": cells_v,
            "dist_bone_um": cells_b,
        }
    )
    vessel = np.concatenate([sets_v(r) for r in range(n_sets)]).astype(float)
    dots = pd.DataFrame(
        {
            "null_set": np.repeat(np.arange(n_sets), len(cells_v)),
            "source_label": np.tile(cells["label"], n_sets),
            "dist_vessel_um": vessel,
            "dist_bone_um": float(dots_b),
        }
    )
    return ImageResult(name, condition, replicate, cells, dots, params=PARAMS)


def _a(n_sets=N_SETS):
    return _image(
        "A", "X", "r1", [1.0, 2.0, 7.0], [20.0, 20.0, 3.0],
        lambda r: [1, 6, 11] if r < 10 else [6, 6, 11], 20.0, n_sets=n_sets,
    )  # fmt: skip


def _b(n_sets=N_SETS):
    return _image(
        "B", "X", "r2", [3.0, 12.0], [4.0, 30.0],
        lambda r: [2, 13] if r < 10 else [8, 13], 5.0, n_sets=n_sets,
    )  # fmt: skip


def _c():
    return _image(
        "C", "Y", "r3", [0.0, 0.0, 1.0, 16.0], [9.0, 12.0, 30.0, 1.0],
        lambda r: [4 + r % 3, 9, 14, 19], 15.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pooled():
    return pool_results(
        [_a(), _b(), _c()], params=PARAMS, quadrant_structures=("vessel", "bone"), n_boot=20
    )


def _rows(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for key, value in where.items():
        mask &= table[key].to_numpy() == value
    return table[mask]


def test_pooled_fold_change_and_fractions(pooled):
    fc = _rows(pooled.fold_change, condition="X", structure="vessel")
    np.testing.assert_array_equal(fc["bin_start_um"], [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(fc["n_cells"], [3, 1, 1])
    np.testing.assert_array_equal(fc["n_dots"], [20, 40, 40])
    np.testing.assert_allclose(fc["fraction_cells"], [0.6, 0.2, 0.2])
    np.testing.assert_allclose(fc["fraction_dots"], [0.2, 0.4, 0.4])
    np.testing.assert_allclose(fc["fold_change"], [3.0, 0.5, 0.5])
    env = _rows(pooled.envelope, condition="X", structure="vessel")
    np.testing.assert_allclose(env["fold_change"], [3.0, 0.5, 0.5])
    assert set(pooled.fold_change["condition"]) == {"X", "Y"}


def test_null_set_r_is_the_union_of_set_r_of_every_image(pooled):
    env = _rows(pooled.envelope, condition="X", structure="vessel")
    # bin 0: pooled sets hold 2 of 5 dots (r < 10) or none (r >= 10): fractions 0.4 / 0
    np.testing.assert_allclose(env["pointwise_low"], [0.0, 0.2 / 0.4, 1.0])
    np.testing.assert_allclose(env["pointwise_high"], [0.4 / 0.2, 0.6 / 0.4, 1.0])
    # the global envelope is the min/max of the 20 null sets (the cells, most extreme, out)
    np.testing.assert_allclose(env["envelope_low"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(env["envelope_high"], [2.0, 1.5, 1.0])
    assert list(env["outside"]) == ["above", "", "below"]
    row = _rows(pooled.statistics, analysis="global envelope", condition="X", structure="vessel")
    assert len(row) == 1
    # the cells are the single most extreme of 21 curves: p = 1 / 21
    assert row["p_value"].iloc[0] == pytest.approx(1 / 21)
    assert (
        row["test"].iloc[0]
        == "global envelope test (extreme rank length, two-sided, 20 null sets)"
    )
    assert row["n_cells"].iloc[0] == 5 and row["n_dots"].iloc[0] == 100


def test_per_replicate_fractions(pooled):
    rf = _rows(pooled.replicate_fractions, condition="X", structure="vessel")
    r1 = _rows(rf, replicate="r1").set_index("bin_start_um")
    r2 = _rows(rf, replicate="r2").set_index("bin_start_um")
    # r1: cells [1, 2, 7]; its 60 dots: 10 / 30 / 20 in bins 0 / 1 / 2
    np.testing.assert_allclose(r1.loc[[0.0, 5.0, 10.0], "fraction_cells"], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(r1.loc[[0.0, 5.0, 10.0], "fraction_dots"], [1 / 6, 1 / 2, 1 / 3])
    # r2: cells [3, 12]; its 40 dots: 10 / 10 / 20
    np.testing.assert_allclose(r2.loc[[0.0, 5.0, 10.0], "fraction_cells"], [0.5, 0, 0.5])
    np.testing.assert_allclose(r2.loc[[0.0, 5.0, 10.0], "fraction_dots"], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(r2.loc[0.0, "fold_change"], 2.0)


def test_pooled_quadrants(pooled):
    q = _rows(pooled.quadrants, condition="X").set_index("quadrant")
    # cells (vessel, bone): (1,20) Q4, (2,20) Q4, (7,3) Q1, (3,4) Q1, (12,30) Q3
    np.testing.assert_array_equal(q.loc[["Q1", "Q2", "Q3", "Q4"], "n_cells"], [2, 0, 1, 2])
    # every pooled null set: A -> Q4, Q4, Q3; B -> Q1, Q2
    np.testing.assert_array_equal(q.loc[["Q1", "Q2", "Q3", "Q4"], "n_dots"], [20, 20, 20, 40])
    np.testing.assert_allclose(q.loc[["Q1", "Q2", "Q3", "Q4"], "fraction_dots"], [0.2] * 3 + [0.4])


def test_pooled_tables_carry_ids(pooled):
    cells = pooled.cells
    assert list(cells.columns[:3]) == ["image", "condition", "replicate"]
    assert list(cells["image"]) == ["A"] * 3 + ["B"] * 2 + ["C"] * 4
    np.testing.assert_array_equal(cells["dist_vessel_um"], [1, 2, 7, 3, 12, 0, 0, 1, 16])
    # realisation 0 only (one dot per cell here): 5 + 4 dots; statistics use all 20 sets
    assert len(pooled.dots0) == 9 and set(pooled.dots0["null_set"]) == {0}
    assert list(pooled.qc["image"]) == ["A", "B", "C"]
    np.testing.assert_array_equal(pooled.qc["n_null_sets"], [20, 20, 20])
    assert list(pooled.density_ratio.columns) == DENSITY_COLUMNS
    assert set(pooled.density_ratio["condition"]) == {"X", "Y"}


def test_statistics_table_has_every_analysis(pooled):
    st = pooled.statistics
    for analysis in ("cells vs dots", "global envelope", "replicate bins", "conditions"):
        assert analysis in set(st["analysis"]), analysis
    assert "quadrant contingency" in set(st["analysis"])
    ks = _rows(
        st, analysis="conditions", structure="vessel", test="Kolmogorov-Smirnov (two-sided)"
    )
    assert len(ks) == 1 and ks["condition"].iloc[0] == "X" and ks["versus"].iloc[0] == "Y"
    assert ks["n_cells"].iloc[0] == 5 and ks["n_cells_versus"].iloc[0] == 4
    # Y has one replicate: its replicate tests are listed as not run, with the reason
    skipped = _rows(st, analysis="replicate bins", condition="Y")
    assert len(skipped) == 2 and skipped["p_value"].isna().all()
    assert skipped["note"].str.contains("at least 2 replicates").all()
    assert _rows(st, analysis="replicate quadrants", condition="Y")["p_value"].isna().all()
    # X has two: the tests ran (3 bins) and say how few replicates they rest on
    ran = _rows(st, analysis="replicate bins", condition="X", structure="vessel")
    assert len(ran) == 3 and ran["note"].str.contains("2 vs 2 replicates").all()


def test_single_condition_single_replicate_still_works():
    result = pool_results([_a()], params=PARAMS, quadrant_structures=("vessel", "bone"))
    st = result.statistics
    assert set(st["condition"]) == {"X"}
    conditions = _rows(st, analysis="conditions")
    assert len(conditions) == 2 and conditions["p_value"].isna().all()
    assert conditions["note"].str.contains("only one condition").all()
    assert _rows(st, analysis="replicate bins")["note"].str.startswith("not run").all()
    assert len(_rows(st, analysis="global envelope")) == 2


def _d():
    """A second replicate of Y (r4), vessel distances 2 and 6."""
    return _image(
        "D", "Y", "r4", [2.0, 6.0], [9.0, 30.0], lambda r: [3, 11], 15.0,
    )  # fmt: skip


def test_pooled_rows_count_the_replicates_their_cells_come_from(pooled):
    st = pooled.statistics
    for analysis in ("cells vs dots", "global envelope", "quadrant contingency"):
        for cond, n in (("X", 2), ("Y", 1)):
            rows = _rows(st, analysis=analysis, condition=cond)
            assert len(rows) and (rows["n_replicates"] == n).all(), (analysis, cond)
            expected = (
                "cells of 2 replicates pooled, treated as independent observations"
                if n == 2
                else "cells of 1 replicate, treated as independent observations"
            )
            assert rows["note"].str.endswith(expected).all(), (analysis, cond)


def test_one_replicate_per_condition_is_a_comparison_of_two_animals():
    result = pool_results([_a(), _c()], params=PARAMS, n_boot=5)  # X: r1 only, Y: r3 only
    st = result.statistics
    ks = _rows(st, analysis="conditions")
    assert len(ks) == 2 and ks["p_value"].notna().all()
    assert (
        ks["note"]
        .str.endswith(
            "pools cells of n = 1 replicate per condition: a difference between two animals, "
            "not between conditions"
        )
        .all()
    )
    # the per-replicate comparison is not run (it would give p = 1), one row per structure
    bins = _rows(st, analysis="conditions bins")
    assert len(bins) == 2 and bins["p_value"].isna().all()
    assert (
        bins["note"]
        .str.startswith(
            "not run: needs at least 2 replicates in each condition, have 1 (X) and 1 (Y)"
        )
        .all()
    )
    # one warning for the pair (not one per structure), for the run log and the report
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("Conditions X vs Y: X and Y have 1 replicate each")
    assert "two animals, not between conditions" in result.warnings[0]
    # X has 2 replicates, Y 1: the note and the warning name the single one
    mixed = pool_results([_a(), _b(), _c()], params=PARAMS, n_boot=5)
    ks = _rows(mixed.statistics, analysis="conditions", structure="vessel")
    assert "Y pools cells of n = 1 replicate" in ks["note"].iloc[0]
    assert len(mixed.warnings) == 1 and "Y has 1 replicate (X 2)" in mixed.warnings[0]
    # two replicates each: no warning, the bins are tested
    both = pool_results([_a(), _b(), _c(), _d()], params=PARAMS, n_boot=5)
    assert not both.warnings
    assert _rows(both.statistics, analysis="conditions bins")["p_value"].notna().any()


def test_between_condition_bins_follow_min_dots():
    # X vessel cells 1, 2, 7, 3, 12 and Y 0, 0, 1, 16, 2, 6: bins 0-5 / 5-10 / 10-15 /
    # 15-20 hold 7 / 2 / 1 / 1 cells of the two conditions together
    for min_dots, tested in ((1, [0, 5, 10, 15]), (2, [0, 5]), (5, [0])):
        result = pool_results(
            [_a(), _b(), _c(), _d()], params=PARAMS.with_(min_dots=min_dots), n_boot=5
        )
        bins = _rows(result.statistics, analysis="conditions bins", structure="vessel")
        np.testing.assert_array_equal(bins["bin_start_um"], [0, 5, 10, 15])
        ran = bins[bins["p_value"].notna()]
        assert list(ran["bin_start_um"]) == tested, min_dots
        skipped = bins[bins["p_value"].isna()]
        counts = {0: 7, 5: 2, 10: 1, 15: 1}
        for start, note in zip(skipped["bin_start_um"], skipped["note"], strict=True):
            assert note == (
                f"not run: fewer than {min_dots} cells in the bin across both conditions "
                f"({counts[int(start)]})"
            )


def test_too_few_null_sets_give_a_reason_not_an_envelope():
    result = pool_results([_a(n_sets=5), _b(n_sets=5)], params=PARAMS)
    assert result.envelope.empty
    assert "envelope_high" in result.envelope.columns
    rows = _rows(result.statistics, analysis="global envelope")
    assert len(rows) == 2 and rows["p_value"].isna().all()
    assert rows["note"].str.contains("at least 19 null sets").all()
    # fold change and the cells-vs-dots tests do not need null sets
    assert len(_rows(result.fold_change, structure="vessel")) == 3
    assert _rows(result.statistics, analysis="cells vs dots")["p_value"].notna().all()


def test_an_envelope_that_cannot_be_drawn_is_reported_not_raised():
    # no bin holds 1000 dots: the envelope and bins are left out, with the reason
    result = pool_results([_a(), _b()], params=PARAMS.with_(min_dots=1000))
    assert result.envelope.empty and result.fold_change.empty
    rows = _rows(result.statistics, analysis="global envelope")
    assert len(rows) == 2 and rows["note"].str.contains("No distance bin holds 1000").all()
    assert _rows(result.statistics, analysis="cells vs dots")["p_value"].notna().all()


def test_unequal_numbers_of_null_sets_use_the_common_minimum():
    result = pool_results([_a(n_sets=25), _b(n_sets=20)], params=PARAMS)
    assert len(result.warnings) == 1
    assert "A: 25, B: 20" in result.warnings[0] and "first 20" in result.warnings[0]
    fc = _rows(result.fold_change, structure="vessel")
    assert fc["n_dots"].sum() == 5 * 20
    row = _rows(result.statistics, analysis="global envelope", structure="vessel")
    assert "20 null sets" in row["test"].iloc[0]
    assert result.record["n_null_sets"] == {"X": 20}


def test_pooling_is_deterministic(pooled):
    again = pool_results(
        [_a(), _b(), _c()], params=PARAMS, quadrant_structures=("vessel", "bone"), n_boot=20
    )
    for name, table in pooled.tables().items():
        pd.testing.assert_frame_equal(table, again.tables()[name], obj=name)


def test_bad_inputs_raise_pooling_errors():
    with pytest.raises(PoolingError, match="unique"):
        pool_results([_a(), _a()], params=PARAMS)
    with pytest.raises(PoolingError, match="no distances to nestin"):
        pool_results([_a()], params=PARAMS, structures=["vessel", "nestin"])
    broken = _a()
    broken.dots = broken.dots.iloc[1:]
    with pytest.raises(PoolingError, match="null set 0 holds 2 random cells"):
        pool_results([broken, _b()], params=PARAMS)
    with pytest.raises(PoolingError, match="nothing to pool|no image"):
        pool_results([], params=PARAMS)


def test_pooled_result_save_and_load(pooled, tmp_path):
    folder = pooled.save(tmp_path / "pooled")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*POOLED_FILES, "pooled.json"])
    back = PooledResult.load(folder)
    assert back.structures == ["vessel", "bone"]
    assert back.quadrant_structures == ("vessel", "bone")
    assert back.conditions == ["X", "Y"]
    for name in ("fold_change", "envelope", "quadrants"):
        mine, theirs = getattr(pooled, name), getattr(back, name)
        for col in mine.columns:
            if pd.api.types.is_numeric_dtype(mine[col]):
                np.testing.assert_allclose(theirs[col], mine[col], rtol=1e-8, err_msg=col)
            else:
                assert list(theirs[col].astype(str)) == list(mine[col].astype(str)), col


# -- one real image ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysed():
    sample = make_bone_marrow((120, 200), (0.57, 0.57), n_cells=8, rng=5)
    params = AnalysisParams(dots_per_cell=2, realizations=3, seed=11)
    result = analyze(
        sample.cell_labels,
        {"vessel": sample.vessel, "bone": sample.bone},
        tissue=sample.tissue,
        spacing=sample.spacing,
        params=params,
    )
    return result


def test_image_result_from_analysis(analysed):
    r = ImageResult.from_analysis(
        analysed, image="femur1", condition="B-ALL", replicate="mouse1", qc={"tissue_um3": 5.0}
    )
    assert r.structures == ["vessel", "bone"]
    assert r.params.dots_per_cell == 2 and r.params.realizations == 3
    assert r.n_null_sets == 6
    r.check()
    assert r.qc["n_cells"] == 8 and r.qc["n_dots"] == 48 and r.qc["n_null_sets"] == 6
    assert r.qc["tissue_um3"] == 5.0
    assert r.qc["overlap_vessel_fraction"] == 0.0
    assert "fold_change.csv" in r.tables and "cells.csv" not in r.tables


def test_random_cells_without_null_sets_are_refused(analysed):
    # random cells that cannot be grouped into null sets cannot be pooled: say so
    old = analysed.dots.drop(columns="null_set")
    with pytest.raises(PoolingError, match="femur1: its random cells have no null_set"):
        ImageResult("femur1", "B-ALL", "m1", analysed.cells, old)


def test_image_result_save_and_load(analysed, tmp_path):
    r = ImageResult.from_analysis(analysed, image="femur1", condition="B-ALL", replicate="m1")
    folder = r.save(tmp_path / "femur1")
    names = {p.name for p in folder.iterdir()}
    for name in ("cells.csv", "dots.csv", "null_distances.npz", "qc.json", "params.json"):
        assert name in names
    assert {"fold_change.csv", "stats.csv", "quadrants.csv", "overlap.csv"} <= names
    # dots.csv: realisation 0 only (null sets 0 and 1 with two dots per cell)
    dots_csv = pd.read_csv(folder / "dots.csv")
    assert len(dots_csv) == 16 and set(dots_csv["null_set"]) == {0, 1}
    assert "centroid_y_um" in dots_csv.columns
    with np.load(folder / "null_distances.npz") as npz:
        assert npz["dist_vessel_um"].dtype == np.float32
        assert npz["dist_vessel_um"].size == 48
    qc = json.loads((folder / "qc.json").read_text())
    assert qc["condition"] == "B-ALL" and qc["n_null_sets"] == 6
    back = ImageResult.load(folder)
    assert (back.image, back.condition, back.replicate) == ("femur1", "B-ALL", "m1")
    assert back.params == r.params
    assert back.n_null_sets == 6
    for name in ("vessel", "bone"):
        col = f"dist_{name}_um"
        # distance maps are float32: storing float32 loses nothing
        np.testing.assert_array_equal(back.dots[col], r.dots[col])
        np.testing.assert_array_equal(back.cells[col], r.cells[col])
    np.testing.assert_array_equal(back.dots["null_set"], r.dots["null_set"])
    np.testing.assert_array_equal(back.dots["source_label"], r.dots["source_label"])
    # a pooled analysis of the saved image equals that of the image in memory
    a = pool_results([r], n_boot=10)
    b = pool_results([back], n_boot=10)
    for name in ("fold_change", "statistics", "quadrants", "density_ratio"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_loading_an_incomplete_folder_names_what_is_missing(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "cells.csv").write_text("label\n1\n")
    with pytest.raises(PoolingError, match="missing null_distances.npz, qc.json"):
        ImageResult.load(tmp_path / "img")
