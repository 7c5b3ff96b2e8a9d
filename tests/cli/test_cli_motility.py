"""`napari-niche motility` end to end, and its bad-input contract (exit 2, one line)."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_niche import __version__
from napari_niche.cli.motility import add_parser, main, run
from napari_niche.core.ensemble import ALPHA_COLUMNS, ENSEMBLE_COLUMNS
from napari_niche.core.motility_stats import COMPARISON_COLUMNS
from napari_niche.core.msd import MSD_TRACK_COLUMNS
from napari_niche.core.track_metrics import PER_TRACK_COLUMNS

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TCELLS = DATA / "tcells_lymph_node.csv"
DT = 30.0
SPLIT = 30
EXPECTED_FILES = {
    "tracks.csv",
    "msd.csv",
    "msd_tracks.csv",
    "alpha.csv",
    "stats.csv",
    "params.json",
    *(f"{name}.{ext}" for name in ("speed", "msd", "alpha") for ext in ("png", "svg")),
}


def persistent_tracks(n_tracks=40, n_frames=60, rng=0):
    """Cells crawling at 12 µm/min before frame SPLIT and 4 µm/min after, turning slowly."""
    gen = np.random.default_rng(rng)
    rows = []
    for i in range(n_tracks):
        pos = gen.uniform(0, 300, 3)
        heading = gen.normal(size=3)
        for f in range(n_frames):
            rows.append((i + 1, f, f * DT, *pos))
            heading += gen.normal(0, 0.3, 3)
            speed = 12.0 if f + 1 < SPLIT else 4.0  # µm/min over the step f -> f + 1
            pos = pos + heading / np.linalg.norm(heading) * speed * DT / 60
    return pd.DataFrame(rows, columns=["track_id", "frame", "t_s", "z_um", "y_um", "x_um"])


@pytest.fixture(scope="module")
def tracks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "cells.csv"
    persistent_tracks().to_csv(path, index=False)
    return path


def cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def base(path, out, *extra):
    return ["motility", path, "--frame-interval", DT, "--out", out, "--n-boot", 200, *extra]


def test_end_to_end_tables_figures_and_record(tracks_file, tmp_path, capsys):
    out = tmp_path / "res"
    code, stdout, err = cli(
        base(tracks_file, out, "--condition-split", SPLIT, "--seed", 5), capsys
    )
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert "before" in stdout and "after" in stdout and "Mann-Whitney U" in stdout

    per = pd.read_csv(out / "tracks.csv")
    assert list(per.columns) == list(PER_TRACK_COLUMNS)
    assert per["condition"].value_counts().to_dict() == {"before": 40, "after": 40}
    assert per.groupby("parent_track_id").size().eq(2).all()  # every track cut at the split
    speed = per.groupby("condition")["mean_speed_um_per_min"].mean()
    assert speed["before"] == pytest.approx(12.0, rel=1e-6)
    assert speed["after"] == pytest.approx(4.0, rel=1e-6)
    assert per["n_points"].tolist() == [SPLIT] * 40 + [60 - SPLIT] * 40

    msd = pd.read_csv(out / "msd.csv")
    assert list(msd.columns) == list(ENSEMBLE_COLUMNS)
    assert list(pd.unique(msd["condition"])) == ["before", "after"]
    assert (msd["msd_ci_low_um2"] <= msd["msd_um2"]).all()
    assert (msd["msd_um2"] <= msd["msd_ci_high_um2"]).all()
    assert list(pd.read_csv(out / "msd_tracks.csv").columns) == list(MSD_TRACK_COLUMNS)

    alpha = pd.read_csv(out / "alpha.csv").set_index("condition")
    assert list(alpha.reset_index().columns) == list(ALPHA_COLUMNS)
    assert (alpha["alpha_ensemble"] > 1.5).all()  # persistent crawling: near-ballistic
    assert (alpha["motion_class"] == "super-diffusive").all()

    stats = pd.read_csv(out / "stats.csv")
    assert list(stats.columns) == list(COMPARISON_COLUMNS)
    mw = stats[(stats["metric"] == "mean_speed_um_per_min") & (stats["test"] == "Mann-Whitney U")]
    assert mw["p_value"].iat[0] < 1e-6
    assert (mw["n_a"].iat[0], mw["n_b"].iat[0]) == (40, 40)

    for name in ("speed", "msd", "alpha"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{name}.svg").read_text()[:2000]

    record = json.loads((out / "params.json").read_text())
    assert record["napari_niche_version"] == __version__
    assert record["command"] == "motility"
    m = record["motility"]
    assert m["frame_interval_s"] == DT and m["condition_split_frame"] == SPLIT
    assert m["seed"] == 5 and m["gap"] == "split" and m["speed_definition"] == "step"
    assert record["inputs"]["tracks"] == str(tracks_file)
    assert set(record["files"]) == EXPECTED_FILES
    assert record["conditions"] == {"before": 40, "after": 40}


def test_same_seed_same_tables(tracks_file, tmp_path, capsys):
    for name in ("a", "b"):
        code, _, err = cli(base(tracks_file, tmp_path / name, "--seed", 1), capsys)
        assert code == 0, err
    for table in ("tracks.csv", "msd.csv", "alpha.csv"):
        assert (tmp_path / "a" / table).read_text() == (tmp_path / "b" / table).read_text()


def test_column_mapping_drift_and_interpolation(tmp_path, capsys):
    df = persistent_tracks(n_tracks=12, n_frames=20)
    df = df.drop(index=[5, 6])  # track 1 misses frames 5 and 6
    df = df.rename(columns={"track_id": "Cell", "t_s": "Time", "x_um": "X", "y_um": "Y"})
    df = df.rename(columns={"z_um": "Z"})
    path = tmp_path / "mapped.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "res"
    code, _, err = cli(
        base(path, out, "--format", "csv", "--columns", "track=Cell,t=Time,x=X,y=Y,z=Z")
        + ["--drift-correction", "--gap", "interpolate", "--lattice-spacing", "20,10,10"],
        capsys,
    )
    assert code == 0, err
    assert (out / "drift.csv").exists()
    per = pd.read_csv(out / "tracks.csv")
    assert len(per) == 12 and per["n_missing_frames"].max() == 0
    record = json.loads((out / "params.json").read_text())
    assert record["motility"]["lattice_spacing_um"] == [20.0, 10.0, 10.0]
    assert record["motility"]["drift_correction"] is True
    assert any("interpolated" in n for n in record["notes"])


@pytest.mark.skipif(
    not TCELLS.exists(),
    reason=f"real T-cell tracks not found in {DATA} (the shared/ folder beside the checkout)",
)
def test_real_tcells_through_the_command(tmp_path, capsys):
    out = tmp_path / "tcells"
    code, stdout, err = cli(
        ["motility", TCELLS, "--frame-interval", 24, "--out", out, "--n-boot", 200, "--seed", 0],
        capsys,
    )
    assert code == 0, err
    per = pd.read_csv(out / "tracks.csv")
    assert 7 < per["mean_speed_um_per_min"].median() < 14
    alpha = pd.read_csv(out / "alpha.csv")
    assert 1.0 < alpha["alpha_ensemble"].iat[0] < 1.6
    assert "too short to fit alpha" in err  # the warning is shown, not hidden


def test_too_few_tracks_for_a_fit_still_give_every_table(tmp_path, capsys):
    path = write(
        tmp_path, "tiny.csv", "track_id,frame,x,y\n1,0,0,0\n1,1,1,0\n1,2,2,1\n2,0,5,5\n2,1,5,6\n"
    )
    out = tmp_path / "res"
    code, _, err = cli(base(path, out), capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    alpha = pd.read_csv(out / "alpha.csv")
    assert (
        alpha["motion_class"].tolist() == ["not fitted"] and alpha["alpha_ensemble"].isna().all()
    )
    assert pd.read_csv(out / "tracks.csv")["mean_speed_um_per_min"].tolist() == pytest.approx(
        [(1 + np.sqrt(2)) / 2 / DT * 60, 1 / DT * 60]
    )
    assert "too short to fit alpha" in err


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = {
    "no such file": (lambda d: d / "missing.csv", [], "missing.csv: no such file"),
    "missing column": (
        lambda d: write(d, "nox.csv", "track_id,frame,y\n1,0,1\n1,1,2\n"),
        [],
        "nox.csv: cannot find the x",
    ),
    "one-point track": (
        lambda d: write(d, "one.csv", "track_id,frame,x,y\n1,0,0,0\n1,1,1,1\n2,0,5,5\n"),
        [],
        "one.csv: 1 track(s) have a single position",
    ),
    "time backwards": (
        lambda d: write(
            d, "back.csv", "track_id,frame,t,x,y\n1,0,0,0,0\n1,1,60,1,1\n1,2,30,2,2\n"
        ),
        [],
        "back.csv: time does not increase within track 1",
    ),
    "bad column key": (
        lambda d: write(d, "ok.csv", "a,b,c,d\n1,0,0,0\n1,1,1,1\n"),
        ["--columns", "track=a,frame=b,x=c,y=d,speed=e"],
        "--columns: Unknown column key 'speed'",
    ),
    "mapped column absent": (
        lambda d: write(d, "ok.csv", "a,b,c,d\n1,0,0,0\n1,1,1,1\n"),
        ["--columns", "track=a,frame=b,x=c,y=Q"],
        "ok.csv: no column y=Q in the file",
    ),
    "lattice not numbers": (
        lambda d: write(d, "ok.csv", "track_id,frame,x,y\n1,0,0,0\n1,1,1,1\n"),
        ["--lattice-spacing", "ten"],
        "--lattice-spacing: expected µm",
    ),
    "lattice wrong length": (
        lambda d: write(d, "ok.csv", "track_id,frame,x,y\n1,0,0,0\n1,1,1,1\n"),
        ["--lattice-spacing", "1,2,3"],
        "--lattice-spacing: 3 values but the tracks",
    ),
    "imaris in pixels": (
        lambda d: write(
            d,
            "c_Position.csv",
            "\nPosition\n====\nPosition X,Position Y,Position Z,Unit,Category,Collection,"
            "Time,TrackID,ID,\n1,2,3,pixel,Spot,Position,1,7,0,\n2,2,3,pixel,Spot,Position,2,7,1,\n",
        ),
        [],
        "c_Position.csv: positions are in pixels",
    ),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_exit_2_one_line_nothing_written(tmp_path, capsys, kind):
    make, extra, message = BAD[kind]
    path = make(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = cli(base(path, out, *extra), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-niche motility: error: ")
    assert message in lines[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".napari-niche")] == []


def test_bad_frame_interval_is_one_line(tracks_file, tmp_path, capsys):
    code, _, err = cli(
        ["motility", tracks_file, "--frame-interval", -5, "--out", tmp_path / "o"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--frame-interval must be a number of seconds, 1e-06 or more" in err and "got -5" in err
    assert not (tmp_path / "o").exists()


def test_unwritable_output_is_one_line(tracks_file, tmp_path, capsys):
    blocker = write(tmp_path, "taken", "a file where the output folder should go")
    code, _, err = cli(base(tracks_file, blocker, "--n-boot", 10), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot write in" in err and "taken: it is a file" in err
    assert blocker.read_text().startswith("a file")


def test_add_parser_registers_the_subcommand_on_a_parent_parser(tracks_file, tmp_path):
    parser = argparse.ArgumentParser(prog="napari-niche")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(
        ["motility", str(tracks_file), "--frame-interval", "30", "--out", str(tmp_path / "o")]
    )
    assert args.func is run
    assert (args.format, args.gap, args.lattice_spacing) == ("auto", "split", "10")
    assert args.condition_split is None and args.drift_correction is False
    with pytest.raises(SystemExit):  # --frame-interval is required
        parser.parse_args(["motility", str(tracks_file), "--out", str(tmp_path / "o")])


@pytest.mark.parametrize(
    ("option", "weighting", "caption"),
    [
        ([], "pairs", "all displacement pairs pooled"),
        (["--msd-weighting", "pairs"], "pairs", "all displacement pairs pooled"),
        (["--msd-weighting", "tracks"], "tracks", "tracks weighted equally"),
    ],
)
def test_msd_weighting_option_recorded_in_tables_figures_and_params(
    tmp_path, capsys, option, weighting, caption
):
    # unequal track lengths, so the two weightings give different ensembles
    df = persistent_tracks(n_tracks=12, n_frames=40, rng=3)
    df = df[df["frame"] < 8 + 3 * df["track_id"]]
    path = tmp_path / "unequal.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "res"
    code, _, err = cli(base(path, out, "--seed", 2, *option), capsys)
    assert code == 0, err
    record = json.loads((out / "params.json").read_text())
    assert record["motility"]["msd_weighting"] == weighting
    msd = pd.read_csv(out / "msd.csv")
    alpha = pd.read_csv(out / "alpha.csv")
    assert set(msd["msd_weighting"]) == set(alpha["msd_weighting"]) == {weighting}
    assert caption in (out / "msd.svg").read_text()
    assert caption in (out / "alpha.svg").read_text()
    # the numbers are those of the core with the same weighting
    from napari_niche.io.tracks import read_tracks
    from napari_niche.motility.pipeline import analyze_motility
    from napari_niche.params import MotilityParams

    expected = analyze_motility(
        read_tracks(path, frame_interval=DT),
        MotilityParams(frame_interval_s=DT, n_boot=200, seed=2, msd_weighting=weighting),
    )
    np.testing.assert_allclose(msd["msd_um2"], expected.msd["msd_um2"], rtol=1e-6)
    np.testing.assert_allclose(
        alpha["alpha_ensemble"], expected.alpha["alpha_ensemble"], rtol=1e-6
    )


def test_unknown_msd_weighting_is_refused(tracks_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["motility", str(tracks_file), "--frame-interval", "30", "--out", str(tmp_path),
              "--msd-weighting", "mean"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--msd-weighting" in capsys.readouterr().err
