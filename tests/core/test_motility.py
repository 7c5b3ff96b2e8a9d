"""Motility metrics against tracks with known answers (docs/method.md#motility, issue 5)."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from napari_niche.core.ensemble import ensemble_msd
from napari_niche.core.errors import TrackError
from napari_niche.core.exploration import sites_visited
from napari_niche.core.motility_stats import compare_motility, paired_tests
from napari_niche.core.msd import classify_alpha, msd_per_track
from napari_niche.core.track_metrics import track_metrics
from napari_niche.core.tracks import (
    check_tracks,
    correct_drift,
    estimate_drift,
    find_gaps,
    handle_gaps,
    split_at_frame,
)
from napari_niche.io.tracks import from_napari_tracks
from napari_niche.motility.pipeline import analyze_motility
from napari_niche.params import MotilityParams

FAST = dict(n_boot=200, seed=0)


def table(track_ids, frames, positions, dt=1.0, **extra):
    """Track table from per-row arrays; positions (N, 3) z, y, x or (N, 2) y, x in µm."""
    positions = np.asarray(positions, float)
    df = pd.DataFrame({"track_id": track_ids, "frame": frames, "t": np.asarray(frames) * dt})
    for name, col in zip(["z", "y", "x"][-positions.shape[1] :], positions.T):
        df[name] = col
    for k, v in extra.items():
        df[k] = v
    return df


def brownian(n_tracks, n_points, D, dt, rng, ndim=3):
    """Positions (n_tracks, n_points, ndim) in µm of free diffusion with coefficient D."""
    steps = rng.normal(0.0, np.sqrt(2 * D * dt), (n_tracks, n_points, ndim))
    steps[:, 0] = rng.uniform(0, 200, (n_tracks, ndim))
    return np.cumsum(steps, axis=1)


def stack(positions, dt, first_id=1):
    n_tracks, n_points, _ = positions.shape
    return table(
        np.repeat(np.arange(first_id, first_id + n_tracks), n_points),
        np.tile(np.arange(n_points), n_tracks),
        positions.reshape(-1, positions.shape[2]),
        dt=dt,
    )


# ----------------------------------------------------------------------------------------
# Straight line at constant speed


@pytest.fixture(scope="module")
def straight():
    dt, n = 30.0, 100
    velocity = np.array([1.0, 2.0, 2.0]) / 3 * (4.5 / 60)  # 4.5 µm/min along (1, 2, 2)/3
    frames = np.arange(n)
    return table(1, frames, np.outer(frames * dt, velocity), dt=dt), dt, n, 4.5


def test_straight_line_speed_straightness_alpha_exact(straight):
    df, dt, n, speed = straight
    for definition in ("step", "path"):
        m = track_metrics(check_tracks(df), speed_definition=definition).iloc[0]
        assert m["mean_speed_um_per_min"] == pytest.approx(speed, rel=1e-12)
    m = track_metrics(check_tracks(df)).iloc[0]
    duration = (n - 1) * dt
    assert m["n_points"] == n and m["duration_s"] == duration
    assert m["path_length_um"] == pytest.approx(speed / 60 * duration, rel=1e-12)
    assert m["net_displacement_um"] == pytest.approx(m["path_length_um"], rel=1e-12)
    assert m["straightness"] == pytest.approx(1.0, abs=1e-12)

    msd = msd_per_track(check_tracks(df))
    assert msd["lag_frames"].min() == 1
    np.testing.assert_allclose(msd["msd_um2"], (speed / 60 * msd["lag_s"]) ** 2, rtol=1e-10)
    assert (msd["n_pairs"] == n - msd["lag_frames"]).all()

    res = analyze_motility(df, MotilityParams(min_tracks=1, **FAST))
    row = res.per_track.iloc[0]
    assert row["alpha"] == pytest.approx(2.0, abs=1e-9)
    assert row["alpha_n_lags"] == n // 4
    assert row["motion_class"] == "super-diffusive"
    assert res.alpha["alpha_ensemble"].iat[0] == pytest.approx(2.0, abs=1e-9)


def test_step_and_path_speed_differ_only_across_unequal_steps():
    # 1 µm in 10 s, then (a missing frame) 4 µm in 20 s: steps 0.1 and 0.2 µm/s
    df = table(1, [0, 1, 3], [[0, 0], [0, 1], [0, 5]], dt=10.0)
    step = track_metrics(check_tracks(df), speed_definition="step").iloc[0]
    path = track_metrics(check_tracks(df), speed_definition="path").iloc[0]
    assert step["mean_speed_um_per_min"] == pytest.approx((0.1 + 0.2) / 2 * 60)
    assert path["mean_speed_um_per_min"] == pytest.approx(5 / 30 * 60)
    assert step["n_missing_frames"] == 1


# ----------------------------------------------------------------------------------------
# Brownian motion, anisotropic sampling


def test_brownian_3d_anisotropic_alpha_one_and_msd_slope_6D():
    rng = np.random.default_rng(7)
    D, dt = 0.5, 20.0  # µm²/s, s
    pos_um = brownian(300, 100, D, dt, rng)
    # Sampled on an anisotropic voxel grid (z 2 µm, y and x 0.5 µm) and handed over as a
    # napari Tracks layer in voxel units whose scale carries the voxel size.
    voxel = np.array([2.0, 0.5, 0.5])
    vox = np.rint(pos_um / voxel)
    n_tracks, n_points, _ = vox.shape
    data = np.column_stack(
        [
            np.repeat(np.arange(n_tracks), n_points),
            np.tile(np.arange(n_points), n_tracks),
            vox.reshape(-1, 3),
        ]
    )
    tracks = from_napari_tracks(data, scale=(dt, *voxel))
    res = analyze_motility(tracks, MotilityParams(frame_interval_s=dt, **FAST))
    alpha = res.alpha.iloc[0]
    assert abs(alpha["alpha_ensemble"] - 1) < 0.1
    assert alpha["alpha_ensemble_ci_low"] < 1 < alpha["alpha_ensemble_ci_high"]
    assert abs(alpha["alpha_tracks_mean"] - 1) < 0.1
    assert alpha["motion_class"] == "diffusive"
    # ensemble MSD = 2 d D lag: slope of a line through the origin, and the table's D
    ens = res.msd[res.msd["lag_frames"] <= 25]
    slope = (ens["msd_um2"] * ens["lag_s"]).sum() / (ens["lag_s"] ** 2).sum()
    assert slope == pytest.approx(2 * 3 * D, rel=0.05)
    assert alpha["D_um2_per_min"] == pytest.approx(D * 60, rel=0.05)
    # per-track speeds: the mean step length of 3D Gaussian steps is sqrt(8/pi) sigma
    sigma = np.sqrt(2 * D * dt)
    expected = np.sqrt(8 / np.pi) * sigma / dt * 60
    assert res.per_track["mean_speed_um_per_min"].mean() == pytest.approx(expected, rel=0.03)


def test_confined_motion_is_sub_diffusive():
    rng = np.random.default_rng(3)
    # Ornstein-Uhlenbeck: diffusion tethered to a point (RMS excursion ~2 µm per axis)
    n_tracks, n_points, D, dt, k = 150, 100, 0.5, 10.0, 0.12
    x = np.zeros((n_tracks, n_points, 3))
    x[:, 0] = rng.normal(0, np.sqrt(D / k), (n_tracks, 3))
    for i in range(1, n_points):
        x[:, i] = x[:, i - 1] * np.exp(-k * dt) + rng.normal(
            0, np.sqrt(D / k * (1 - np.exp(-2 * k * dt))), (n_tracks, 3)
        )
    res = analyze_motility(stack(x, dt), MotilityParams(**FAST))
    a = res.alpha.iloc[0]
    assert a["alpha_ensemble"] < 0.5 and a["alpha_ensemble_ci_high"] < 0.7
    assert a["motion_class"] == "sub-diffusive"
    assert a["fraction_sub_diffusive"] > 0.9


def test_classify_alpha_band():
    got = classify_alpha([0.5, 0.85, 1.0, 1.15, 1.5, np.nan], band=0.2)
    assert list(got) == [
        "sub-diffusive",
        "diffusive",
        "diffusive",
        "diffusive",
        "super-diffusive",
        "not fitted",
    ]


# ----------------------------------------------------------------------------------------
# Gaps


@pytest.fixture
def gapped():
    """Track 1 misses frames 10 and 11 and moves 1 µm per frame along x; track 2 is whole."""
    f1 = np.r_[0:10, 12:20]
    f2 = np.arange(20)
    frames = np.r_[f1, f2]
    x = np.r_[f1 * 1.0, f2 * 0.5]
    pos = np.column_stack([np.zeros_like(x), x])
    return table(np.r_[np.ones(f1.size, int), np.full(f2.size, 2)], frames, pos, dt=5.0)


def test_gap_never_makes_a_spurious_lag(gapped):
    tracks = check_tracks(gapped)
    assert find_gaps(tracks).to_dict("records") == [
        {"track_id": 1, "last_frame_before": 9, "first_frame_after": 12, "missing_frames": 2}
    ]
    msd = msd_per_track(tracks, min_pairs=1)
    one = msd[msd["track_id"] == 1].set_index("lag_frames")
    assert one.index.min() == 1  # no lag 0
    # lags are frame differences: a unit-speed line has MSD = lag² exactly, with the
    # pairs across the gap (9 -> 12 is lag 3, not 1) counted at their true lag
    np.testing.assert_allclose(one["msd_um2"], one.index.to_numpy() ** 2.0)
    assert one.loc[1, "n_pairs"] == 9 + 7
    assert one.loc[3, "n_pairs"] == 7 + 5 + 1
    assert one.loc[3, "lag_s"] == 15.0


def test_gap_split_interpolate_drop(gapped):
    tracks = check_tracks(gapped)
    split, note = handle_gaps(tracks, "split")
    assert "split" in note
    sizes = split.groupby("track_id").size()
    assert sorted(sizes.to_numpy()) == [8, 10, 20]
    new_id = (set(split["track_id"]) - {1, 2}).pop()
    assert new_id > 2
    part = split[split["track_id"] == new_id]
    assert part["frame"].tolist() == list(range(12, 20))
    assert (part["parent_track_id"] == 1).all()

    interp, _ = handle_gaps(tracks, "interpolate")
    one = interp[interp["track_id"] == 1]
    assert one["frame"].tolist() == list(range(20))
    filled = one[one["interpolated"]]
    assert filled["frame"].tolist() == [10, 11]
    np.testing.assert_allclose(filled["x"], [10.0, 11.0])
    np.testing.assert_allclose(filled["t"], [50.0, 55.0])
    assert not interp.loc[interp["track_id"] == 2, "interpolated"].any()

    dropped, _ = handle_gaps(tracks, "drop")
    assert set(dropped["track_id"]) == {2}

    for how, n_tracks in (("split", 3), ("interpolate", 2), ("drop", 1)):
        res = analyze_motility(gapped, MotilityParams(gap=how, min_tracks=1, **FAST))
        assert len(res.per_track) == n_tracks
        assert res.msd_tracks["lag_frames"].min() >= 1
        assert res.per_track["n_missing_frames"].max() == 0


def test_duplicate_time_point_is_an_error_not_a_zero_lag():
    df = table(1, [0, 1, 1, 2], [[0, 0], [1, 0], [1.5, 0], [2, 0]])
    with pytest.raises(TrackError, match="two positions at the same time point"):
        check_tracks(df)


# ----------------------------------------------------------------------------------------
# Exploration


def test_exploration_hand_computed_path():
    # lattice 2 µm in y, 1 µm in x; boxes are (floor(y / 2), floor(x / 1))
    # (0.5,0.5) -> (0.5,3.5): boxes (0,0) (0,1) (0,2) (0,3)
    # -> (4.5,3.5): (1,3) (2,3)
    # -> back to (0.5,0.5) diagonally: crossings at y=4 (1,3), x=3 (1,2), x=2 (1,1),
    #    y=2 (0,1), x=1 (0,0): two new boxes, (1,2) and (1,1). 8 distinct boxes.
    pts = [[0.5, 0.5], [0.5, 3.5], [4.5, 3.5], [0.5, 0.5]]
    df = check_tracks(table(1, [0, 1, 2, 3], pts, dt=60.0))
    assert sites_visited(df, (2.0, 1.0)).tolist() == [8]
    res = analyze_motility(df, MotilityParams(lattice_spacing_um=(2.0, 1.0), min_tracks=1))
    assert res.per_track["sites_visited"].iat[0] == 8
    assert res.per_track["new_sites_per_min"].iat[0] == pytest.approx(7 / 3)
    # through a corner: only the two boxes the segment passes through, not the two it touches
    corner = check_tracks(table(1, [0, 1], [[0.5, 0.5], [1.5, 1.5]]))
    assert sites_visited(corner, 1.0).tolist() == [2]
    # a cell that stays in its box explores nothing new
    still = check_tracks(table(1, [0, 1, 2], [[0.2, 0.2], [0.4, 0.6], [0.3, 0.1]], dt=30.0))
    res = analyze_motility(still, MotilityParams(lattice_spacing_um=1.0, min_tracks=1))
    assert res.per_track["new_sites_per_min"].iat[0] == 0


def boxes_crossed(p0, p1, spacing):
    """Boxes whose interior the segment p0-p1 passes through, by the slab method (exact)."""
    lo = np.floor(np.minimum(p0, p1) / spacing).astype(int)
    hi = np.floor(np.maximum(p0, p1) / spacing).astype(int)
    d = p1 - p0
    out = {tuple(np.floor(p0 / spacing).astype(int)), tuple(np.floor(p1 / spacing).astype(int))}
    for box in np.ndindex(*(hi - lo + 1)):
        b = lo + np.array(box)
        t0, t1 = 0.0, 1.0
        for a in range(len(d)):
            lo_a, hi_a = b[a] * spacing[a], (b[a] + 1) * spacing[a]
            if d[a] == 0:
                if not lo_a <= p0[a] < hi_a:
                    t0, t1 = 1.0, 0.0
                continue
            u = sorted(((lo_a - p0[a]) / d[a], (hi_a - p0[a]) / d[a]))
            t0, t1 = max(t0, u[0]), min(t1, u[1])
        if t1 - t0 > 1e-12:
            out.add(tuple(b))
    return out


def test_exploration_matches_exact_box_intersection_in_3d():
    rng = np.random.default_rng(11)
    pos = brownian(30, 40, 1.0, 5.0, rng)
    spacing = np.array([4.0, 2.5, 3.0])
    got = sites_visited(check_tracks(stack(pos, 5.0)), spacing)
    for i in range(30):
        boxes = set().union(
            *(boxes_crossed(a, b, spacing) for a, b in zip(pos[i][:-1], pos[i][1:]))
        )
        assert got[i] == len(boxes)


# ----------------------------------------------------------------------------------------
# Drift


def test_drift_correction_removes_known_drift():
    rng = np.random.default_rng(5)
    D, dt, n_tracks, n_points = 0.2, 10.0, 400, 60
    own = brownian(n_tracks, n_points, D, dt, rng)
    drift_per_frame = np.array([0.5, -1.0, 2.0])  # µm per frame, z y x
    frames = np.arange(n_points)
    drifted = own + frames[None, :, None] * drift_per_frame
    df = check_tracks(stack(drifted, dt))
    drift = estimate_drift(df)
    sigma = np.sqrt(2 * D * dt)
    per_step = np.diff(drift[["drift_z_um", "drift_y_um", "drift_x_um"]].to_numpy(), axis=0)
    assert np.all(np.abs(per_step - drift_per_frame) < 5 * sigma / np.sqrt(n_tracks))
    corrected, _ = correct_drift(df)
    back = corrected[["z", "y", "x"]].to_numpy().reshape(n_tracks, n_points, 3)
    # what is left is the tracks' own motion, up to the drift estimate's noise
    assert np.abs(back - own).max() < 0.1 * np.abs(drift_per_frame).max() * n_points
    plain = analyze_motility(df, MotilityParams(**FAST)).alpha["alpha_ensemble"].iat[0]
    fixed = analyze_motility(df, MotilityParams(drift_correction=True, **FAST))
    assert plain > 1.5
    assert abs(fixed.alpha["alpha_ensemble"].iat[0] - 1) < 0.1
    assert fixed.drift is not None and "drift.csv" in fixed.tables()


def test_drift_of_cells_that_do_not_move_is_removed_exactly():
    frames = np.arange(5)
    shift = np.column_stack([0 * frames, 3.0 * frames])
    df = table(np.repeat([1, 2], 5), np.tile(frames, 2), np.vstack([shift, shift + [10, 10]]))
    corrected, drift = correct_drift(check_tracks(df))
    np.testing.assert_allclose(drift["drift_x_um"], 3.0 * frames)
    np.testing.assert_allclose(corrected["x"], np.repeat([0.0, 10.0], 5))


# ----------------------------------------------------------------------------------------
# Conditions and tests


def test_condition_split_cuts_spanning_tracks():
    frames = np.arange(10)
    pos = np.column_stack([np.zeros(20), np.tile(frames, 2).astype(float)])
    df = table(np.repeat([1, 2], 10), np.tile(frames, 2), pos)
    df.loc[df["track_id"] == 2, "frame"] += 6  # track 2: frames 6..15
    df["t"] = df["frame"] * 1.0
    out, dropped = split_at_frame(check_tracks(df), 5)
    assert dropped == 0
    parts = out.groupby("track_id").agg(
        parent=("parent_track_id", "first"),
        condition=("condition", "first"),
        n=("frame", "size"),
        first=("frame", "min"),
    )
    assert parts.loc[1].tolist() == [1, "before", 5, 0]
    new = parts[(parts["parent"] == 1) & (parts.index != 1)].iloc[0]
    assert new.tolist() == [1, "after", 5, 5]
    assert parts.loc[2].tolist() == [2, "after", 10, 6]  # entirely after: not cut
    assert out.groupby("track_id")["condition"].nunique().max() == 1
    res = analyze_motility(df, MotilityParams(condition_split_frame=5, min_tracks=1, **FAST))
    # no step crosses the split: 4 + 4 + 9 unit steps instead of 9 + 9
    assert res.per_track["path_length_um"].sum() == pytest.approx(17.0)
    assert list(res.alpha["condition"]) == ["before", "after"]


def test_compare_motility_finds_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(2)
    per = pd.DataFrame(
        {
            "condition": ["before"] * 60 + ["after"] * 60,
            "mean_speed_um_per_min": np.r_[rng.normal(10, 2, 60), rng.normal(6, 2, 60)],
            "straightness": rng.uniform(0.2, 0.8, 120),
        }
    )
    out = compare_motility(per)
    speed = out[out["metric"] == "mean_speed_um_per_min"].set_index("test")
    assert (speed["p_value"] < 1e-6).all()
    assert speed.loc["Welch t", "mean_a"] > speed.loc["Welch t", "mean_b"]
    a = per["mean_speed_um_per_min"].to_numpy()
    welch = stats.ttest_ind(a[:60], a[60:], equal_var=False)
    assert speed.loc["Welch t", "statistic"] == pytest.approx(welch.statistic)
    straight = out[out["metric"] == "straightness"]
    assert (straight["p_value"] > 0.01).all()
    assert set(out["test"]) == {"Student t (equal variances)", "Welch t", "Mann-Whitney U"}


def test_paired_tests_known_example():
    before = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    after = np.array([2.0, 3.5, 3.5, 6.0, 6.0])  # differences 1, 1.5, 0.5, 2, 1
    out = paired_tests(before, after).set_index("test")
    d = after - before
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert t == pytest.approx(4.7068, abs=1e-4)
    assert out.loc["paired t", "statistic"] == pytest.approx(t)
    assert out.loc["paired t", "p_value"] == pytest.approx(2 * stats.t.sf(t, df=4))
    # all five differences positive: W = 0, exact two-sided p = 2 / 2^5
    assert out.loc["Wilcoxon signed-rank", "statistic"] == 0
    assert out.loc["Wilcoxon signed-rank", "p_value"] == pytest.approx(0.0625)
    assert out.loc["paired t", "mean_difference"] == pytest.approx(1.2)
    assert out.loc["paired t", "n_pairs"] == 5
    with pytest.raises(Exception, match="one 'after' value per 'before'"):
        paired_tests([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------------------
# Checks, parameters, reproducibility


@pytest.mark.parametrize(
    ("df", "message"),
    [
        (pd.DataFrame({"track_id": [1, 1], "frame": [0, 1], "x": [0, 1]}), "missing column"),
        (table([1, 1, 2], [0, 1, 0], [[0, 0], [1, 1], [2, 2]]), "single position"),
        (
            pd.DataFrame(
                {"track_id": 1, "frame": [0, 1, 2], "t": [0, 20, 10], "y": 0.0, "x": 0.0}
            ),
            "time does not increase",
        ),
        (table(1, [0, 1], [[0, np.nan], [1, 1]]), "missing or non-numeric x"),
        (table(1, [0, 1.5], [[0, 0], [1, 1]]), "whole numbers"),
    ],
)
def test_bad_tracks_are_refused_with_a_reason(df, message):
    with pytest.raises(TrackError, match=message):
        check_tracks(df, source="tracks.csv")
    with pytest.raises(TrackError, match="^tracks.csv: "):
        check_tracks(df, source="tracks.csv")


def test_rows_in_any_order_are_sorted():
    df = table([2, 1, 1, 2], [1, 1, 0, 0], [[0, 3], [0, 1], [0, 0], [0, 2]])
    out = check_tracks(df)
    assert out["track_id"].tolist() == [1, 1, 2, 2] and out["frame"].tolist() == [0, 1, 0, 1]


def test_params_round_trip_and_seed_reproducibility():
    p = MotilityParams(frame_interval_s=20, lattice_spacing_um=(4, 2, 2), seed=9, n_boot=50)
    assert MotilityParams.from_dict(p.to_dict()) == p
    with pytest.raises(TrackError, match="gap"):
        MotilityParams(gap="fill")
    rng = np.random.default_rng(1)
    df = stack(brownian(20, 30, 1.0, 10.0, rng), 10.0)
    a = ensemble_msd(check_tracks(df), n_boot=100, rng=4)
    b = ensemble_msd(check_tracks(df), n_boot=100, rng=np.random.default_rng(4))
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    r = analyze_motility(df, MotilityParams(n_boot=20))
    assert isinstance(r.record["motility"]["seed"], int)


# ----------------------------------------------------------------------------------------
# Ensemble MSD weighting: pooled pairs (celltrackR, trackpy) by default, tracks as option

SHARED_DATA = Path(
    os.environ.get(
        "NAPARI_NICHE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"
    )
)
TCELLS = SHARED_DATA / "tcells_lymph_node.csv"


def two_tracks():
    """Track 1: 11 positions at 1 µm/frame; track 2: 3 positions at 2 µm/frame (along x)."""
    long_x = np.arange(11.0)
    short_x = 100.0 + 2.0 * np.arange(3)
    return table(
        [1] * 11 + [2] * 3,
        list(range(11)) + list(range(3)),
        np.column_stack([np.zeros(14), np.concatenate([long_x, short_x])]),
    )


@pytest.mark.parametrize(
    ("weighting", "min_pairs", "expected"),
    [
        # lag 1: 10 pairs of 1 µm² and 2 pairs of 4 µm²; lag 2: 9 pairs of 4, 1 pair of 16
        ("pairs", 1, {1: (10 * 1 + 2 * 4) / 12, 2: (9 * 4 + 16) / 10}),
        ("pairs", 3, {1: (10 * 1 + 2 * 4) / 12, 2: (9 * 4 + 16) / 10}),  # every pair
        ("tracks", 1, {1: (1 + 4) / 2, 2: (4 + 16) / 2}),
        ("tracks", 3, {1: 1.0, 2: 4.0}),  # track 2 has < 3 pairs: left out
    ],
)
def test_two_tracks_analytic_ensemble(weighting, min_pairs, expected):
    df = check_tracks(two_tracks())
    ens, _ = ensemble_msd(
        df, frame_interval=1.0, min_pairs=min_pairs, min_tracks=1, n_boot=0, weighting=weighting
    )
    got = ens.set_index("lag_frames")
    for lag, value in expected.items():
        assert got.loc[lag, "msd_um2"] == pytest.approx(value, rel=1e-12)
    assert set(ens["msd_weighting"]) == {weighting}
    # the pooled value sits near the long track's (1 µm² at lag 1), the mean of the
    # tracks halfway between the two tracks
    assert got.loc[1, "n_pairs"] == (12 if weighting == "pairs" or min_pairs == 1 else 10)


def test_weightings_agree_for_equal_tracks_and_band_follows_the_weighting():
    rng = np.random.default_rng(5)
    df = check_tracks(stack(brownian(15, 25, 1.0, 10.0, rng), 10.0))
    a = ensemble_msd(df, n_boot=200, rng=3, weighting="pairs")
    b = ensemble_msd(df, n_boot=200, rng=3, weighting="tracks", min_pairs=1)
    cols = ["msd_um2", "msd_ci_low_um2", "msd_ci_high_um2"]
    # every track has the same pairs at every lag: the weightings coincide, band included
    np.testing.assert_allclose(a[0][cols], b[0][cols], rtol=1e-12)
    # unequal lengths: they differ, and each band surrounds its own estimate
    short = df[~((df["track_id"] <= 7) & (df["frame"] >= 10))]
    p, pa = ensemble_msd(short, n_boot=200, rng=3, weighting="pairs")
    t, ta = ensemble_msd(short, n_boot=200, rng=3, weighting="tracks", min_pairs=1)
    assert not np.allclose(p["msd_um2"], t["msd_um2"])
    for e in (p, t):
        assert (e["msd_ci_low_um2"] <= e["msd_um2"]).all()
        assert (e["msd_um2"] <= e["msd_ci_high_um2"]).all()
    # alpha and D are fitted to that weighting's ensemble
    for e, al in ((p, pa), (t, ta)):
        row = al.iloc[0]
        fit = e[e["lag_frames"] <= row["fit_max_lag_frames"]]
        slope = np.polyfit(np.log(fit["lag_s"]), np.log(fit["msd_um2"]), 1)[0]
        assert row["alpha_ensemble"] == pytest.approx(slope, rel=1e-9)
        lag = fit["lag_s"].to_numpy()
        d = (fit["msd_um2"].to_numpy() * lag).sum() / (2 * 3 * (lag * lag).sum()) * 60
        assert row["D_um2_per_min"] == pytest.approx(d, rel=1e-9)
    assert pa["alpha_ensemble"].iat[0] != ta["alpha_ensemble"].iat[0]


def test_weighting_is_a_parameter_recorded_and_checked():
    p = MotilityParams()
    assert p.msd_weighting == "pairs"
    assert MotilityParams.from_dict(p.with_(msd_weighting="tracks").to_dict()).msd_weighting == (
        "tracks"
    )
    old = {k: v for k, v in p.to_dict().items() if k != "msd_weighting"}
    old["version"] = 1  # a params.json written before the option: tracks weighted then
    assert MotilityParams.from_dict(old).msd_weighting == "tracks"
    for bad in ("pair", "", None):
        with pytest.raises(TrackError, match="MSD weighting"):
            MotilityParams(msd_weighting=bad)
    rng = np.random.default_rng(2)
    df = stack(brownian(6, 20, 1.0, 10.0, rng), 10.0)
    r = analyze_motility(df, MotilityParams(n_boot=10, seed=1, msd_weighting="tracks"))
    assert r.record["motility"]["msd_weighting"] == "tracks"
    assert set(r.msd["msd_weighting"]) == set(r.alpha["msd_weighting"]) == {"tracks"}


def pooled_msd_by_hand(tracks: pd.DataFrame, lags) -> dict[int, float]:
    """celltrackR's aggregate(tracks, squareDisplacement) on gap-free pieces, in loops.

    Each track is cut wherever a frame is missing; per lag k every pair of positions k
    frames apart within a piece contributes its squared displacement; all are pooled.
    """
    sums = {k: 0.0 for k in lags}
    counts = {k: 0 for k in lags}
    for _, tr in tracks.sort_values(["track_id", "frame"]).groupby("track_id"):
        frames = tr["frame"].to_numpy()
        pos = tr[[c for c in ("z", "y", "x") if c in tr.columns]].to_numpy(float)
        cuts = np.flatnonzero(np.diff(frames) != 1) + 1
        for piece in np.split(np.arange(len(frames)), cuts):
            p = pos[piece]
            for k in lags:
                for i in range(len(p) - k):
                    d = p[i + k] - p[i]
                    sums[k] += float(d @ d)
                    counts[k] += 1
    return {k: sums[k] / counts[k] for k in lags}


@pytest.mark.skipif(not TCELLS.exists(), reason=f"real T-cell tracks not found in {SHARED_DATA}")
def test_default_ensemble_equals_pooled_pairs_on_real_tcells():
    from napari_niche.io.tracks import read_tracks

    tracks = read_tracks(TCELLS, frame_interval=24.0)
    result = analyze_motility(tracks, MotilityParams(frame_interval_s=24.0, n_boot=20, seed=0))
    lags = range(1, 21)
    expected = pooled_msd_by_hand(check_tracks(tracks), lags)
    got = result.msd.set_index("lag_frames")["msd_um2"]
    for k in lags:
        assert got[k] == pytest.approx(expected[k], rel=1e-6), k
    assert result.record["motility"]["msd_weighting"] == "pairs"
    # weighting tracks equally gives 27.96 µm² at lag 1 here instead of 23.55 (issue 14)
    tracks_weighted = analyze_motility(
        tracks, MotilityParams(frame_interval_s=24.0, n_boot=20, seed=0, msd_weighting="tracks")
    )
    assert tracks_weighted.msd["msd_um2"].iat[0] > got[1] * 1.1
