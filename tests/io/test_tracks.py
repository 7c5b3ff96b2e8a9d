"""Track readers on files written here in the documented layouts, and on the real T cells."""

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_niche.core.errors import TrackError
from napari_niche.core.tracks import find_gaps
from napari_niche.io.tracks import (
    detect_format,
    from_napari_tracks,
    napari_get_reader,
    parse_column_mapping,
    read_tracks,
    to_napari_tracks,
)
from napari_niche.motility.pipeline import analyze_motility
from napari_niche.params import MotilityParams

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TCELLS = DATA / "tcells_lymph_node.csv"

TM_HEADER = (
    "LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_Z,POSITION_T,FRAME,RADIUS,"
    "VISIBILITY,MEAN_INTENSITY_CH1\n"
    "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,Radius,Visibility,Mean intensity ch1\n"
    "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,R,Visibility,Mean ch1\n"
    ",,,(quality),({space}),({space}),({space}),({time}),,({space}),,(counts)\n"
)


def trackmate_rows(spots):
    """spots: (spot id, track id or '', x, y, z, t, frame, intensity)."""
    return "".join(
        f"ID{s},{s},{tr},1.0,{x},{y},{z},{t},{f},5.0,1,{i}\n" for s, tr, x, y, z, t, f, i in spots
    )


# Track 0: 4 spots, 30 s apart, moving (1, 0, 2) µm (z, y, x) per frame; track 1: 3 spots;
# spot 9 is in no track. Rows deliberately not in time order.
TM_SPOTS = [
    (2, 0, 5.0, 5.0, 4.0, 60.0, 2, 120),
    (0, 0, 1.0, 5.0, 2.0, 0.0, 0, 100),
    (1, 0, 3.0, 5.0, 3.0, 30.0, 1, 110),
    (3, 0, 7.0, 5.0, 5.0, 90.0, 3, 130),
    (4, 1, 50.0, 40.0, 1.0, 0.0, 0, 200),
    (5, 1, 50.0, 43.0, 1.0, 30.0, 1, 210),
    (6, 1, 50.0, 47.0, 1.0, 60.0, 2, 220),
    (9, "", 80.0, 80.0, 1.0, 0.0, 0, 50),
]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def trackmate_csv(tmp_path):
    return write(
        tmp_path / "spots.csv",
        TM_HEADER.format(space="micron", time="sec") + trackmate_rows(TM_SPOTS),
    )


def test_trackmate_csv_four_header_rows(trackmate_csv):
    assert detect_format(trackmate_csv) == "trackmate"
    df = read_tracks(trackmate_csv)
    assert list(df.columns[:6]) == ["track_id", "frame", "t", "z", "y", "x"]
    assert df["track_id"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    one = df[df["track_id"] == 0]
    assert one["frame"].tolist() == [0, 1, 2, 3]
    assert one["t"].tolist() == [0.0, 30.0, 60.0, 90.0]
    assert one["x"].tolist() == [1.0, 3.0, 5.0, 7.0] and one["z"].tolist() == [2, 3, 4, 5]
    assert one["MEAN_INTENSITY_CH1"].tolist() == [100, 110, 120, 130]
    assert {"spot_id", "spot_label", "QUALITY", "RADIUS"} <= set(df.columns)
    assert 9 not in set(df["spot_id"])  # the spot in no track
    assert df.attrs["frame_interval_s"] == 30.0 and df.attrs["format"] == "trackmate"
    res = analyze_motility(df, MotilityParams(min_tracks=1, n_boot=10))
    speed = res.per_track.set_index("track_id")["mean_speed_um_per_min"]
    assert speed[0] == pytest.approx(np.sqrt(1 + 4) / 30 * 60)
    assert speed[1] == pytest.approx((3 + 4) / 2 / 30 * 60)


def test_trackmate_units_converted_and_pixels_refused(tmp_path):
    nm_min = [
        (s, tr, x * 1000, y * 1000, z * 1000, t / 60, f, i) for s, tr, x, y, z, t, f, i in TM_SPOTS
    ]
    path = write(
        tmp_path / "nm.csv", TM_HEADER.format(space="nm", time="min") + trackmate_rows(nm_min)
    )
    a = read_tracks(path)
    b = read_tracks(
        write(
            tmp_path / "um.csv",
            TM_HEADER.format(space="micron", time="sec") + trackmate_rows(TM_SPOTS),
        )
    )
    pd.testing.assert_frame_equal(
        a[["track_id", "frame", "t", "z", "y", "x"]], b[["track_id", "frame", "t", "z", "y", "x"]]
    )
    px = write(
        tmp_path / "px.csv", TM_HEADER.format(space="pixel", time="sec") + trackmate_rows(TM_SPOTS)
    )
    with pytest.raises(TrackError, match=r"px\.csv: positions are in pixels"):
        read_tracks(px)


def test_given_frame_interval_defines_time_and_a_mismatch_is_warned(trackmate_csv):
    df = read_tracks(trackmate_csv, frame_interval=20.0)
    assert df.loc[df["track_id"] == 0, "t"].tolist() == [0.0, 20.0, 40.0, 60.0]
    assert any("imply 30 s per frame" in w for w in df.attrs["warnings"])
    same = read_tracks(trackmate_csv, frame_interval=30.0)
    assert same.attrs["warnings"] == []


TM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<TrackMate version="7.11.1">
  <Log>...</Log>
  <Model spatialunits="µm" timeunits="min">
    <FeatureDeclarations>
      <SpotFeatures><Feature feature="QUALITY" name="Quality" shortname="Quality"
        dimension="QUALITY" isint="false" /></SpotFeatures>
    </FeatureDeclarations>
    <AllSpots nspots="14">
{spots}
    </AllSpots>
    <AllTracks>
      <Track name="Track_0" TRACK_ID="0" TRACK_INDEX="0" NUMBER_SPOTS="4">
        <Edge SPOT_SOURCE_ID="100" SPOT_TARGET_ID="101" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="102" SPOT_TARGET_ID="101" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="102" SPOT_TARGET_ID="103" LINK_COST="1.0" />
      </Track>
      <Track name="Track_1" TRACK_ID="1" TRACK_INDEX="1" NUMBER_SPOTS="7">
        <Edge SPOT_SOURCE_ID="200" SPOT_TARGET_ID="201" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="201" SPOT_TARGET_ID="202" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="202" SPOT_TARGET_ID="203" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="203" SPOT_TARGET_ID="204" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="202" SPOT_TARGET_ID="213" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="213" SPOT_TARGET_ID="214" LINK_COST="1.0" />
      </Track>
      <Track name="Track_2" TRACK_ID="2" TRACK_INDEX="2" NUMBER_SPOTS="3">
        <Edge SPOT_SOURCE_ID="300" SPOT_TARGET_ID="301" LINK_COST="1.0" />
        <Edge SPOT_SOURCE_ID="301" SPOT_TARGET_ID="302" LINK_COST="1.0" />
      </Track>
    </AllTracks>
    <FilteredTracks>
      <TrackID TRACK_ID="0" />
      <TrackID TRACK_ID="1" />
    </FilteredTracks>
  </Model>
  <Settings>
    <ImageData filename="movie.tif" folder="" width="512" height="512" nslices="20"
      nframes="10" pixelwidth="0.5" pixelheight="0.5" voxeldepth="2.0" timeinterval="0.5" />
  </Settings>
</TrackMate>
"""


def xml_spots():
    """Track 0: spots 100-103; track 1: 200-202 then a division into 203-204 and 213-214."""
    spots = [(100 + f, f, 1.0 + 2 * f, 5.0, 2.0 + f) for f in range(4)]
    spots += [(200 + f, f, 50.0, 40.0 + f, 1.0) for f in range(5)]
    spots += [(213 + f - 3, f, 60.0, 40.0 + f, 1.0) for f in (3, 4)]
    spots += [(300 + f, f, 0.0, 0.0, 1.0 + f) for f in range(3)]
    by_frame = {}
    for sid, f, x, y, z in spots:
        by_frame.setdefault(f, []).append(
            f'        <Spot ID="{sid}" name="ID{sid}" QUALITY="{sid / 10}" POSITION_T="{f * 0.5}" '
            f'FRAME="{f}" POSITION_X="{x}" POSITION_Y="{y}" POSITION_Z="{z}" RADIUS="5.0" '
            f'VISIBILITY="1" MEAN_INTENSITY_CH1="{sid}" />'
        )
    return "\n".join(
        f'      <SpotsInFrame frame="{f}">\n' + "\n".join(rows) + "\n      </SpotsInFrame>"
        for f, rows in sorted(by_frame.items())
    )


def test_trackmate_xml_edges_filters_units_and_divisions(tmp_path):
    path = write(tmp_path / "model.xml", TM_XML.format(spots=xml_spots()))
    assert detect_format(path) == "trackmate-xml"
    df = read_tracks(path)
    assert 2 not in set(df["parent_track_id"])  # filtered out in TrackMate
    zero = df[df["track_id"] == 0]
    assert zero["spot_id"].tolist() == [100, 101, 102, 103]  # reversed edge oriented in time
    assert zero["t"].tolist() == [0.0, 30.0, 60.0, 90.0]  # POSITION_T in min
    assert zero["x"].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert zero["MEAN_INTENSITY_CH1"].tolist() == [100, 101, 102, 103]
    # the dividing track becomes three linear segments: 200-202, 203-204, 213-214
    one = df[df["parent_track_id"] == 1]
    segments = sorted(one.groupby("track_id")["spot_id"].apply(list).tolist())
    assert segments == [[200, 201, 202], [203, 204], [213, 214]]
    assert set(one["track_id"]).isdisjoint({0, 1, 2})
    assert any("branch" in n for n in df.attrs["notes"])
    assert df.attrs["frame_interval_s"] == 30.0


def imaris_text(track_column, rows):
    header = f"Position X,Position Y,Position Z,Unit,Category,Collection,Time,{track_column},ID,\n"
    return "\n" + "Position\n" + "==================== \n" + header + "".join(rows)


IMARIS_ROWS = [
    "10.5,20.0,3.0,um,Spot,Position,1,1000000000,0,\n",
    "11.5,20.0,3.0,um,Spot,Position,2,1000000000,1,\n",
    "13.5,20.0,3.0,um,Spot,Position,3,1000000000,2,\n",
    "40.0,41.0,5.0,um,Spot,Position,2,1000000001,3,\n",
    "40.0,44.0,9.0,um,Spot,Position,3,1000000001,4,\n",
    "99.0,99.0,9.0,um,Spot,Position,1,,5,\n",
]


@pytest.mark.parametrize("track_column", ["TrackID", "Parent"])
def test_imaris_position_export(tmp_path, track_column):
    path = write(tmp_path / "cells_Position.csv", imaris_text(track_column, IMARIS_ROWS))
    assert detect_format(path) == "imaris"
    df = read_tracks(path, frame_interval=15.0)
    assert df["track_id"].tolist() == [1000000000] * 3 + [1000000001] * 2
    assert df["frame"].tolist() == [0, 1, 2, 1, 2]  # Time counts from 1
    assert df["t"].tolist() == [0.0, 15.0, 30.0, 15.0, 30.0]
    assert df["x"].tolist()[:3] == [10.5, 11.5, 13.5]
    assert df["spot_id"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(TrackError, match="Imaris stores time points.*frame interval"):
        read_tracks(path)


def test_generic_csv_mapping_units_from_names_and_condition(tmp_path):
    path = write(
        tmp_path / "tracks.csv",
        textwrap.dedent(
            """\
            Cell;Time [min];PosX (nm);PosY (nm);Group;Area
            a;0;1000;0;drug;12.5
            a;0.5;2000;0;drug;13
            a;1;4000;0;drug;12
            b;0;0;0;control;9
            b;0.5;0;3000;control;9.5
            """
        ),
    )
    mapping = parse_column_mapping(
        "track=Cell,t=Time [min],x=PosX (nm),y=PosY (nm),condition=Group"
    )
    df = read_tracks(path, columns=mapping)
    assert df["track_name"].tolist() == ["a", "a", "a", "b", "b"]
    assert df["frame"].tolist() == [0, 1, 2, 0, 1] and df.attrs["frame_interval_s"] == 30.0
    assert df["t"].tolist() == [0.0, 30.0, 60.0, 0.0, 30.0]
    assert df["x"].tolist()[:3] == [1.0, 2.0, 4.0]
    assert df["condition"].tolist() == ["drug"] * 3 + ["control"] * 2
    assert df["Area"].tolist()[0] == 12.5
    with pytest.raises(TrackError, match="Unknown column key 'speed'"):
        parse_column_mapping("speed=V")


def test_generic_csv_names_recognised_without_mapping(tmp_path):
    path = write(tmp_path / "plain.csv", "track,frame,x,y\n1,0,0,0\n1,1,1,0\n2,3,5,5\n2,4,5,6\n")
    df = read_tracks(path, frame_interval=10.0)
    assert df["t"].tolist() == [0.0, 10.0, 30.0, 40.0]
    assert "z" not in df.columns
    with pytest.raises(TrackError, match="frames but no times: give the frame interval"):
        read_tracks(path)


@pytest.mark.skipif(
    not TCELLS.exists(),
    reason=f"real T-cell tracks not found in {DATA} (the shared/ folder beside the checkout)",
)
def test_real_tcells_lymph_node():
    df = read_tracks(TCELLS)
    assert df.attrs["format"] == "csv" and df.attrs["frame_interval_s"] == 24.0
    assert len(df) == 5157 and df["track_id"].nunique() == 258
    assert {"z", "y", "x"} <= set(df.columns)
    assert len(find_gaps(df)) == 6
    res = analyze_motility(df, MotilityParams(frame_interval_s=24.0, n_boot=300, seed=0))
    speed = res.per_track["mean_speed_um_per_min"]
    # T cells crawl at ~10 µm/min in lymph nodes (Miller et al. 2002)
    assert 7 < speed.median() < 14
    assert speed.max() < 40
    a = res.alpha.iloc[0]
    # persistent random walk: MSD rises faster than linearly at lags of a few frames
    assert 1.0 < a["alpha_ensemble"] < 1.6 and a["alpha_ensemble_ci_low"] > 1.0
    assert 0.2 < res.per_track["straightness"].median() < 0.8


def test_napari_tracks_round_trip_and_real_layer(trackmate_csv):
    df = read_tracks(trackmate_csv)
    data, kwargs = to_napari_tracks(df)
    assert data.shape == (7, 5)
    assert data[:4, 1].tolist() == [0, 1, 2, 3]  # frames, not seconds
    assert kwargs["scale"] == (30.0, 1.0, 1.0, 1.0)
    assert kwargs["features"]["t"].tolist() == df["t"].tolist()
    back = from_napari_tracks(data, kwargs["scale"], kwargs["features"])
    pd.testing.assert_frame_equal(back, df, check_like=True, check_dtype=False)
    # a layer drawn in voxels (z 2 µm, y x 0.5 µm) comes back in µm
    vox = data.copy()
    vox[:, 2:] /= [2.0, 0.5, 0.5]
    again = from_napari_tracks(vox, (30.0, 2.0, 0.5, 0.5))
    np.testing.assert_allclose(again[["z", "y", "x"]], df[["z", "y", "x"]])
    with pytest.raises(TrackError, match="frame numbers"):
        from_napari_tracks(np.c_[data[:, :1], data[:, 1:2] * 30.5, data[:, 2:]], (1, 1, 1, 1))

    layers = pytest.importorskip("napari.layers")
    layer = layers.Tracks(data, **kwargs)
    assert tuple(layer.scale) == (30.0, 1.0, 1.0, 1.0)
    assert layer.extent.world[1][0] == 90.0  # last time point, in seconds
    assert "MEAN_INTENSITY_CH1" in layer.features.columns

    # colour by a per-track metric: the metrics ride along as per-point features
    res = analyze_motility(df, MotilityParams(min_tracks=1, n_boot=10))
    points = res.tracks_with_metrics()
    assert len(points) == len(df) and points["frame"].tolist() == df["frame"].tolist()
    pdata, pkwargs = to_napari_tracks(points)
    coloured = layers.Tracks(pdata, **pkwargs, color_by="mean_speed_um_per_min")
    speeds = coloured.features.groupby("track_id")["mean_speed_um_per_min"].first()
    assert (
        speeds.to_dict() == res.per_track.set_index("track_id")["mean_speed_um_per_min"].to_dict()
    )

    reader = napari_get_reader(str(trackmate_csv))
    ((rdata, rkwargs, kind),) = reader(str(trackmate_csv))
    assert kind == "tracks" and np.array_equal(rdata, data)
    other = trackmate_csv.with_name("table.csv")
    other.write_text("label,area\n1,20\n")
    assert napari_get_reader(str(other)) is None  # not tracks: left to other readers


# ----------------------------------------------------------------------------------------
# Bad files: a clear error naming the file and the problem


BAD = {
    "missing column": (
        "spots.csv",
        TM_HEADER.replace("POSITION_Y,", "").format(space="micron", time="sec")
        + "ID0,0,0,1.0,1.0,2.0,0.0,0,5.0,1,100\nID1,1,0,1.0,2.0,2.0,30.0,1,5.0,1,100\n",
        "missing column(s) POSITION_Y",
    ),
    "one-point track": (
        "spots.csv",
        TM_HEADER.format(space="micron", time="sec")
        + trackmate_rows(TM_SPOTS[:4] + [(7, 5, 1.0, 1.0, 1.0, 0.0, 0, 9)]),
        "1 track(s) have a single position (track id 5)",
    ),
    "time backwards": (
        "spots.csv",
        TM_HEADER.format(space="micron", time="sec")
        + trackmate_rows(
            [(0, 0, 1, 1, 1, 0.0, 0, 1), (1, 0, 2, 1, 1, 60.0, 1, 1), (2, 0, 3, 1, 1, 30.0, 2, 1)]
        ),
        "time does not increase within track 0",
    ),
    "duplicate time point": (
        "spots.csv",
        TM_HEADER.format(space="micron", time="sec")
        + trackmate_rows(
            [(0, 0, 1, 1, 1, 0.0, 0, 1), (1, 0, 2, 1, 1, 30.0, 1, 1), (2, 0, 3, 1, 1, 30.0, 1, 1)]
        ),
        "track 0 has two positions at the same time point (frame 1)",
    ),
    "imaris without track column": (
        "x_Position.csv",
        "\nPosition\n====\nPosition X,Position Y,Position Z,Unit,Category,Collection,Time,ID\n"
        "1,2,3,um,Spot,Position,1,0\n",
        "missing column(s) TrackID (or Parent)",
    ),
    "csv without x": ("t.csv", "track,frame,y\n1,0,1\n1,1,2\n", "cannot find the x"),
    "broken xml": ("m.xml", "<TrackMate><Model></TrackMate>", "not a readable XML file"),
    "not trackmate xml": ("m.xml", "<Other/>", "not a TrackMate file"),
    "text in positions": (
        "t.csv",
        "track,frame,x,y\n1,0,1,oops\n1,1,2,3\n",
        "missing or non-numeric y",
    ),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, kind):
    name, text, message = BAD[kind]
    path = write(tmp_path / name, text)
    with pytest.raises(TrackError) as err:
        read_tracks(path, frame_interval=30.0)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(TrackError, match="no such file"):
        read_tracks(tmp_path / "nope.csv")
