"""Synthetic experiments with known effects: pooling finds what was planted, and only that.

Two conditions of three replicates (mice) each: in "vessel-homing" half of every image's
cells are planted within 3 µm of a vessel, in "bone-homing" within 3 µm of bone; the other
cells are uniform in the marrow. Images are 2D sections (200 x 500 voxels of 0.57 µm, the
long side along the bone so that the planted cells fit next to it), 30 cells each, 199
null sets: small enough to analyse in about a second, large enough that the planted
effects are clear.
"""

import numpy as np
import pandas as pd
import pytest
from helpers import analyze_from_masks
from scipy import ndimage

from napari_niche.core import cell_voxels, distance_map_um, min_distance_per_label
from napari_niche.core.errors import NicheError, NoRoomError
from napari_niche.core.random_cells import seed_random_cells
from napari_niche.core.synthetic import make_bone_marrow
from napari_niche.experiment.pooling import ImageResult, pool_results
from napari_niche.experiment.spec import Experiment
from napari_niche.experiment.synthetic import make_experiment
from napari_niche.io import read_image

SHAPE = (200, 500)
SPACING = (0.57, 0.57)
VESSEL, BONE = "vessel-homing", "bone-homing"


def _rows(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for key, value in where.items():
        mask &= table[key].to_numpy() == value
    return table[mask]


# -- the phantom can plant cells next to bone --------------------------------------------------


def test_cells_planted_near_bone_touch_bone_and_share_the_tissue():
    bone = make_bone_marrow(
        SHAPE, SPACING, n_cells=30, near_vessel_fraction=0.5, near="bone", rng=4
    )
    vessel = make_bone_marrow(SHAPE, SPACING, n_cells=30, near_vessel_fraction=0.5, rng=4)
    # the same seed gives the same tissue whichever structure the cells are planted near
    np.testing.assert_array_equal(bone.vessel, vessel.vessel)
    np.testing.assert_array_equal(bone.bone, vessel.bone)
    assert bone.near == "bone" and bone.params["near"] == "bone"
    assert bone.near_bone.sum() == 15 and not bone.near_vessel.any()
    np.testing.assert_array_equal(bone.planted_near, bone.near_bone)
    assert vessel.near_vessel.sum() == 15 and not vessel.near_bone.any()
    to_bone = ndimage.distance_transform_edt(~bone.bone, sampling=SPACING)
    per_cell = ndimage.minimum(to_bone, bone.cell_labels, np.arange(1, bone.n_cells + 1))
    assert per_cell.min() > 0  # never inside bone
    assert per_cell[bone.near_bone].max() <= 3.0
    assert np.median(per_cell[~bone.near_bone]) > 10.0
    assert not (bone.cell_labels.astype(bool) & bone.vessel).any()


def test_cells_planted_near_bone_in_3d():
    sp = (2.0, 0.57, 0.57)
    s = make_bone_marrow(
        (10, 96, 160), sp, n_cells=12, near_vessel_fraction=1.0, near="bone", rng=1
    )
    to_bone = ndimage.distance_transform_edt(~s.bone, sampling=sp)
    per_cell = ndimage.minimum(to_bone, s.cell_labels, np.arange(1, s.n_cells + 1))
    assert s.near_bone.all() and 0 < per_cell.min() and per_cell.max() <= 3.0


def test_near_must_be_vessel_or_bone_and_room_is_checked():
    with pytest.raises(NicheError, match="near 'vessel' or 'bone'"):
        make_bone_marrow(SHAPE, SPACING, n_cells=3, near="nestin", rng=0)
    # a 2D section has room for about one cell per 9 µm of bone surface
    with pytest.raises(NoRoomError, match="within 3 µm of bone"):
        make_bone_marrow((200, 200), SPACING, n_cells=60, near_vessel_fraction=1.0, near="bone")


# -- the experiment files ---------------------------------------------------------------------


def test_make_experiment_writes_images_masks_and_a_loadable_file(tmp_path):
    path = make_experiment(
        tmp_path / "exp",
        conditions={"A": "vessel", "B": "bone", "control": None},
        replicates=2,
        images_per_replicate=2,
        shape=(120, 300),
        n_cells=10,
        realizations=19,
        rng=1,
    )
    exp = Experiment.load(path)
    assert path.name == "experiment.toml" and exp.conditions() == ["A", "B", "control"]
    assert len(exp.images) == 12 and exp.structures() == ["vessel", "bone"]
    spec = exp.image("B-m2-b1")
    assert (spec.condition, spec.replicate) == ("B", "B-m2")
    assert spec.masks == {}  # raw channels only: the run thresholds them
    raw, spacing = read_image(spec.channels["vessel"])
    assert raw.shape == (120, 300) and raw.dtype == np.float32 and spacing == SPACING
    assert exp.analysis.realizations == 19 and exp.analysis.seed is not None
    assert exp.output == tmp_path / "exp" / "results"
    truth = pd.read_csv(tmp_path / "exp" / "truth.csv")
    assert list(truth["planted_near"].fillna("")) == ["vessel"] * 4 + ["bone"] * 4 + [""] * 4
    assert list(truth["n_planted"]) == [5] * 8 + [0] * 4
    # the true masks are there, readable with their voxel size
    labels, sp = read_image(tmp_path / "exp" / "masks" / "B-m2-b1" / "cells.tif")
    assert sp == SPACING and labels.max() == 10
    # from_masks names them in the file; the same seed writes the same images
    again = make_experiment(
        tmp_path / "again",
        conditions={"A": "vessel", "B": "bone", "control": None},
        replicates=2,
        images_per_replicate=2,
        shape=(120, 300),
        n_cells=10,
        realizations=19,
        from_masks=True,
        rng=1,
    )
    spec2 = Experiment.load(again).image("B-m2-b1")
    assert set(spec2.masks) == {"cells", "vessel", "bone", "tissue"}
    np.testing.assert_array_equal(read_image(spec2.channels["vessel"])[0], raw)
    np.testing.assert_array_equal(read_image(spec2.masks["cells"])[0], labels)
    with pytest.raises(NicheError, match="near 'vessel' or 'bone'"):
        make_experiment(tmp_path / "bad", conditions={"A": "nestin"})


def test_truth_csv_keeps_condition_names_with_commas(tmp_path):
    cond = "T-ALL, after chemo"
    path = make_experiment(
        tmp_path / "exp",
        conditions={cond: None},
        replicates=2,
        shape=(120, 300),
        n_cells=5,
        realizations=19,
        rng=2,
    )
    truth = pd.read_csv(tmp_path / "exp" / "truth.csv")
    assert list(truth["condition"]) == [cond, cond]
    assert list(truth["replicate"]) == [f"{cond}-m1", f"{cond}-m2"]
    assert list(truth["image"]) == [f"{cond}-m1-b1", f"{cond}-m2-b1"]
    assert list(truth["n_cells"]) == [5, 5]
    assert Experiment.load(path).conditions() == [cond]


# -- planted effects are found ----------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = make_experiment(
        tmp_path_factory.mktemp("planted"),
        conditions={VESSEL: "vessel", BONE: "bone"},
        replicates=3,
        shape=SHAPE,
        spacing=SPACING,
        n_cells=30,
        near_fraction=0.5,
        realizations=199,
        from_masks=True,
        rng=2024,
    )
    exp, results = analyze_from_masks(path)
    pooled = pool_results(
        results,
        params=exp.analysis,
        quadrant_structures=("vessel", "bone"),
        conditions=exp.conditions(),
        n_boot=50,
    )
    return exp, results, pooled


@pytest.mark.parametrize(("condition", "structure"), [(VESSEL, "vessel"), (BONE, "bone")])
def test_planted_enrichment_is_found(planted, condition, structure):
    _, _, pooled = planted
    first = _rows(pooled.envelope, condition=condition, structure=structure).iloc[0]
    assert first["bin_start_um"] == 0.0
    assert first["fold_change"] > 1.5
    assert first["fold_change"] > first["envelope_high"] and first["outside"] == "above"
    st = pooled.statistics
    envelope = _rows(st, analysis="global envelope", condition=condition, structure=structure)
    assert envelope["p_value"].iloc[0] < 0.05
    assert "199 null sets" in envelope["test"].iloc[0]
    tests = _rows(st, analysis="cells vs dots", condition=condition, structure=structure)
    assert (tests["p_value"] < 0.05).all()
    # cells sit closer than random cells: negative rank-biserial correlation
    mwu = tests[tests["test"].str.startswith("Mann")]
    assert mwu["effect_size"].iloc[0] < 0
    assert envelope["n_cells"].iloc[0] == 90 and envelope["n_dots"].iloc[0] == 90 * 199


@pytest.mark.parametrize("structure", ["vessel", "bone"])
def test_conditions_differ_for_both_structures(planted, structure):
    _, _, pooled = planted
    ks = _rows(
        pooled.statistics,
        analysis="conditions",
        structure=structure,
        test="Kolmogorov-Smirnov (two-sided)",
    )
    assert len(ks) == 1
    assert (ks["condition"].iloc[0], ks["versus"].iloc[0]) == (VESSEL, BONE)
    assert ks["p_value"].iloc[0] < 0.05
    assert ks["n_replicates"].iloc[0] == 3 and ks["n_replicates_versus"].iloc[0] == 3
    # the replicate-level bins exist and state that 3 vs 3 cannot go below p = 0.1; bins
    # with fewer than min_dots cells of both conditions are kept as "not run" rows
    bins = _rows(pooled.statistics, analysis="conditions bins", structure=structure)
    ran = bins[bins["p_value"].notna()]
    assert len(ran) and ran["note"].str.contains("3 vs 3 replicates").all()
    sparse = bins[bins["p_value"].isna()]
    assert sparse["note"].str.startswith("not run: fewer than 10 cells in the bin").all()
    assert (ran["correction"] == f"Holm over {len(ran)} bins").all()
    assert (bins["n_replicates"] == 3).all() and (bins["n_replicates_versus"] == 3).all()
    assert "n = 1" not in ks["note"].iloc[0]


@pytest.mark.parametrize(("condition", "other"), [(VESSEL, "bone"), (BONE, "vessel")])
def test_no_enrichment_next_to_the_other_structure(planted, condition, other):
    """Nothing was planted next to the other structure, and nothing is found there.

    What is honest to assert: in this phantom vessels and bone are not independent. The
    vessel network fills the marrow above the endosteum, so the thin layer along the bone
    holds fewer vessels than the marrow on average (checked below on the true masks).
    Cells planted next to bone therefore sit *farther* from vessels than random cells,
    and cells planted next to vessels are somewhat scarcer right at the bone: real
    deviations, implied by the geometry, which a test may rightly detect. With this seed
    the bone-homing cells do leave the vessel envelope (global p 0.005): fewer of them at
    10-15 µm from a vessel and more far from any, while their first bin sits at a fold
    change of 1.0. Asserting "no difference" would be wrong; what the geometry never
    implies is an *enrichment* in contact with the other structure, and that is what must
    not appear (checked on the envelope's first bin and the quadrant of cells near the
    other structure only).
    """
    _, _, pooled = planted
    first = _rows(pooled.envelope, condition=condition, structure=other).iloc[0]
    assert first["bin_start_um"] == 0.0
    assert first["outside"] != "above"
    assert first["fold_change"] <= first["envelope_high"]
    fisher = _rows(pooled.statistics, analysis="quadrant contingency", condition=condition)
    q = {"vessel": "Q4", "bone": "Q2"}[other]  # near the other structure only
    row = fisher[fisher["quadrant"] == q].iloc[0]
    assert not (row["p_adjusted"] < 0.05 and row["effect_size"] > 1)


def test_the_phantom_has_fewer_vessels_along_the_bone(planted):
    # the geometry that the test above refers to, measured on the true masks
    exp, _, _ = planted
    in_band, overall = [], []
    for spec in exp.images:
        vessel = read_image(spec.masks["vessel"])[0] > 0
        bone = read_image(spec.masks["bone"])[0] > 0
        free = ~bone & ~vessel
        near_vessel = ndimage.distance_transform_edt(~vessel, sampling=SPACING) < 5.0
        band = free & (ndimage.distance_transform_edt(~bone, sampling=SPACING) <= 8.0)
        in_band.append(near_vessel[band].mean())
        overall.append(near_vessel[free].mean())
    assert np.mean(in_band) < 0.8 * np.mean(overall)


def test_every_pooled_table_is_filled(planted):
    _, results, pooled = planted
    assert pooled.conditions == [VESSEL, BONE]
    assert len(pooled.cells) == 180 and len(pooled.dots0) == 180
    assert set(pooled.replicate_fractions["replicate"]) == {r.replicate for r in results}
    assert set(pooled.quadrants["condition"]) == {VESSEL, BONE}
    ratio = _rows(pooled.density_ratio, condition=VESSEL, structure="vessel")
    assert ratio["ratio"].iloc[0] > 1.5 and ratio["low"].iloc[0] > 1.0
    rep = _rows(pooled.statistics, analysis="replicate bins", condition=VESSEL, structure="vessel")
    assert len(rep) > 3 and (rep["n_replicates"] == 3).all()
    assert rep["correction"].str.startswith("Holm over").all()
    # pooled tests carry the replicates their cells come from
    st = pooled.statistics
    pooled_rows = st[st["analysis"].isin(["cells vs dots", "global envelope"])]
    assert len(pooled_rows) == 12 and (pooled_rows["n_replicates"] == 3).all()
    assert not pooled.warnings


def test_one_replicate_per_condition_compares_animals(tmp_path):
    """The README example: one mouse per condition. Nothing per-replicate runs, the
    between-condition KS says it compares two animals, the pooled result warns, and the
    report quotes the real numbers of replicates."""
    from napari_niche.experiment.report import write_report

    path = make_experiment(
        tmp_path / "exp", replicates=1, shape=(120, 300), n_cells=10, realizations=19,
        from_masks=True, rng=3,
    )  # fmt: skip
    exp, results = analyze_from_masks(path)
    pooled = pool_results(
        results, params=exp.analysis, conditions=exp.conditions(),
        quadrant_structures=("vessel", "bone"), n_boot=5,
    )  # fmt: skip
    st = pooled.statistics
    per_replicate = st[st["analysis"].isin(["replicate bins", "conditions bins"])]
    assert len(per_replicate) and per_replicate["p_value"].isna().all()
    assert per_replicate["note"].str.startswith("not run: needs at least 2 replicates").all()
    ks = _rows(st, analysis="conditions")
    assert ks["note"].str.contains("pools cells of n = 1 replicate per condition").all()
    assert len(pooled.warnings) == 1 and "have 1 replicate each" in pooled.warnings[0]
    pooled_rows = st[st["analysis"].isin(["cells vs dots", "global envelope"])]
    assert (pooled_rows["n_replicates"] == 1).all()
    report = write_report(
        tmp_path / "out",
        record={"warnings": pooled.warnings, "analysis": exp.analysis.to_dict()},
        tables=pooled.tables(),
        qc=pooled.qc,
        figures={},
        thumbnails={},
        errors=pd.DataFrame(),
    ).read_text(encoding="utf-8")
    assert "3 against 3" not in report and "have 1 replicate each" in report


# -- determinism ------------------------------------------------------------------------------


def _small_pooled(folder, seed):
    path = make_experiment(
        folder,
        replicates=2,
        shape=(120, 300),
        n_cells=10,
        realizations=19,
        from_masks=True,
        rng=seed,
    )
    exp, results = analyze_from_masks(path)
    return pool_results(
        results,
        params=exp.analysis,
        quadrant_structures=("vessel", "bone"),
        conditions=exp.conditions(),
        n_boot=20,
    )


def test_same_seed_gives_identical_pooled_tables(tmp_path):
    # everything random (images, per-image seeds, random cells, the density bootstrap)
    # flows from the one seed given to make_experiment
    first = _small_pooled(tmp_path / "a", seed=7)
    second = _small_pooled(tmp_path / "b", seed=7)
    for name, table in first.tables().items():
        pd.testing.assert_frame_equal(table, second.tables()[name], obj=name)
    assert len(first.statistics) > 50


# -- the null experiment ----------------------------------------------------------------------

N_NULL = 40


def _null_experiment(seed):
    """One null experiment: two images (bones) of one mouse, cells uniform in the marrow.

    Reduced from the full experiment for speed: small sections with 10 cells (sparse, so
    that real cells excluding each other does not matter); 19 null sets per image, drawn
    as one realisation of 19 virtual cells per real cell (the same null sets as 19
    realisations, built in one call); one replicate, so the slow replicate-level tests,
    which are not what is calibrated here, are skipped.
    """
    results = []
    for rep in range(2):
        s = make_bone_marrow(
            (120, 300), SPACING, n_cells=10, near_vessel_fraction=0.0, rng=1000 * seed + rep
        )
        voxels = cell_voxels(s.cell_labels)
        dots = seed_random_cells(
            voxels,
            spacing=SPACING,
            tissue=s.tissue,
            exclude={"vessel": s.vessel, "bone": s.bone},
            dots_per_cell=19,
            rng=10_000 + 10 * seed + rep,
        )
        cells = pd.DataFrame({"label": voxels.labels})
        table = pd.DataFrame({"null_set": np.arange(dots.n_dots) // voxels.n_cells})
        for name, mask in (("vessel", s.vessel), ("bone", s.bone)):
            dmap = distance_map_um(mask, spacing=SPACING)
            cells[f"dist_{name}_um"] = min_distance_per_label(voxels, dmap).astype(float)
            table[f"dist_{name}_um"] = dots.min_distance(dmap).astype(float)
        results.append(ImageResult(f"i{rep}", "null", "m1", cells, table))
    pooled = pool_results(results, n_boot=0)
    rows = _rows(pooled.statistics, analysis="global envelope")
    return rows.set_index("structure")["p_value"]


def test_null_experiment_rejects_in_about_5_percent_of_seeds():
    # how long the 40 experiments take: benchmarks/bench_test_timings.py
    p = pd.DataFrame([_null_experiment(seed) for seed in range(N_NULL)])
    assert list(p.columns) == ["vessel", "bone"] and p.notna().all().all()
    rejected = int((p <= 0.05).sum().sum())
    # 80 tests at level 0.05 (two structures per experiment, not independent): about 4
    # expected; Binomial(80, 0.05) exceeds 11 with probability < 0.001, while a pooling
    # that broke exchangeability (e.g. unequal null sets) rejects far more often.
    assert rejected <= 11, f"{rejected} of {p.size} null tests rejected at 5%"
    # p-values spread over (0, 1] (1/20 steps), not piled at 1 by an over-cautious test
    assert 0.35 < float(p.to_numpy().mean()) < 0.7


# -- the whole run, from raw channels ---------------------------------------------------------


def test_run_experiment_from_raw_channels_finds_the_planted_effects(tmp_path):
    """``napari-niche run`` on make_experiment output: thresholds, masks, pooling, report."""
    from napari_niche.experiment.runner import run_experiment

    path = make_experiment(
        tmp_path / "exp",
        replicates=2,
        shape=(160, 500),
        n_cells=24,
        near_fraction=0.5,
        realizations=39,
        rng=11,
    )
    summary = run_experiment(path, jobs=1, figures=False)
    assert summary.ok, summary.failed
    assert len(summary.done) == 4
    pooled = summary.pooled
    assert (summary.out / "pooled" / "statistics.csv").exists()
    # the cells came from thresholding the raw cell channel: all 24 per image are found
    assert pooled.qc["n_cells"].tolist() == [24] * 4
    for condition, structure in ((VESSEL, "vessel"), (BONE, "bone")):
        first = _rows(pooled.envelope, condition=condition, structure=structure).iloc[0]
        assert first["bin_start_um"] == 0.0 and first["fold_change"] > 1.5
        ks = _rows(
            pooled.statistics,
            analysis="cells vs dots",
            condition=condition,
            structure=structure,
            test="Kolmogorov-Smirnov (two-sided)",
        )
        assert ks["p_value"].iloc[0] < 0.05
    # the same pooled result can be read back from the folder the run wrote
    back = ImageResult.load(summary.out / "images" / summary.done[0])
    assert back.n_null_sets == 39 and back.condition == VESSEL
    # nothing changed: a second run skips every image and pools the same numbers
    again = run_experiment(path, jobs=1, figures=False)
    assert sorted(again.skipped) == sorted(summary.done) and not again.done
    pd.testing.assert_frame_equal(again.pooled.envelope, pooled.envelope)
