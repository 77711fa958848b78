"""Track importers on small files built here: TrackMate XML, CTC res_track.txt + masks, generic tables.

Every format gets the same three cases: a division, a gap, and a track leaving the image.
"""

import logging

import numpy as np
import pandas as pd
import pytest
import tifffile

from viscy_data.importers import (
    TRACKS_COLUMNS,
    TrackImportError,
    detect_track_format,
    detections_outside,
    finalize_tracks,
    find_ctc_label_images,
    import_tracks,
    read_ctc_tracks,
    read_res_track,
    read_trackmate_image,
    read_trackmate_xml,
    read_tracks,
    read_tracks_table,
    tracks_csv_path,
    write_tracks_csv,
)

# ----------------------------------------------------------------------------------------------- TrackMate

CAL = 0.5  # um per pixel in the TrackMate files below


def _trackmate_xml(spots, tracks, filtered=None, image=True, extra_spot_attrs=None):
    """A TrackMate file: spots (id, frame, y_px, x_px[, attrs]), tracks {TRACK_ID: [(source, target), ...]}."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<TrackMate version="7.13.2">',
        '  <Model spatialunits="micron">',
    ]
    lines.append('    <AllSpots nspots="%d">' % len(spots))
    for spot in spots:
        spot_id, frame, y, x = spot[:4]
        attrs = spot[4] if len(spot) > 4 else {}
        extra = "".join(f' {k}="{v}"' for k, v in {**(extra_spot_attrs or {}), **attrs}.items())
        lines.append(
            f'      <Spot ID="{spot_id}" name="s{spot_id}" FRAME="{frame}" POSITION_X="{x * CAL}" '
            f'POSITION_Y="{y * CAL}" POSITION_Z="0.0" POSITION_T="{frame}.0"{extra}>1 2 3 4</Spot>'
        )
    lines.append("    </AllSpots>")
    lines.append("    <AllTracks>")
    for track_id, edges in tracks.items():
        lines.append(f'      <Track name="Track_{track_id}" TRACK_ID="{track_id}" NUMBER_SPOTS="{len(edges) + 1}">')
        for source, target in edges:
            lines.append(f'        <Edge SPOT_SOURCE_ID="{source}" SPOT_TARGET_ID="{target}" LINK_COST="1.0" />')
        lines.append("      </Track>")
    lines.append("    </AllTracks>")
    lines.append("    <FilteredTracks>")
    for track_id in tracks if filtered is None else filtered:
        lines.append(f'      <TrackID TRACK_ID="{track_id}" />')
    lines.append("    </FilteredTracks>")
    lines.append("  </Model>")
    if image:
        lines.append("  <Settings>")
        lines.append(
            f'    <ImageData filename="movie.tif" folder="/data/" width="64" height="48" nslices="1" nframes="6" '
            f'pixelwidth="{CAL}" pixelheight="{CAL}" voxeldepth="1.0" timeinterval="1.0" />'
        )
        lines.append("  </Settings>")
    lines.append("</TrackMate>")
    return "\n".join(lines) + "\n"


# track 0: a mother (spots 1-3, frames 0-2) divides into two daughters (frames 3-4)
# track 5: a gap (frames 0, 1, then 3, 4: a gap-closing link 11 -> 13), one edge stored backwards
# track 7: a cell moving to the right border and out of the image (last seen at x=63, frame 2)
# spot 99: detected but in no track; track 9: filtered out by TrackMate
SPOTS = [
    (1, 0, 10.0, 10.0, {"MEAN_INTENSITY_CH1": 100}),
    (2, 1, 10.5, 11.0, {"MEAN_INTENSITY_CH1": 110}),
    (3, 2, 11.0, 12.0, {"MEAN_INTENSITY_CH1": 120}),
    (4, 3, 8.0, 12.0),
    (5, 4, 7.0, 12.5),
    (6, 3, 14.0, 12.0),
    (7, 4, 15.0, 12.5),
    (10, 0, 30.0, 30.0),
    (11, 1, 30.0, 31.0),
    (13, 3, 30.0, 33.0),
    (14, 4, 30.0, 34.0),
    (20, 0, 40.0, 55.0),
    (21, 1, 40.0, 59.0),
    (22, 2, 40.0, 63.0),
    (99, 2, 5.0, 5.0),
    (30, 0, 20.0, 20.0),
    (31, 1, 20.0, 21.0),
]
TRACKS = {
    0: [(1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (6, 7)],
    5: [(10, 11), (13, 11), (13, 14)],
    7: [(20, 21), (21, 22)],
    9: [(30, 31)],
}


@pytest.fixture
def trackmate_file(tmp_path):
    path = tmp_path / "tracks.xml"
    path.write_text(_trackmate_xml(SPOTS, TRACKS, filtered=[0, 5, 7]))
    return path


def _by_track(tracks):
    return {tid: rows.reset_index(drop=True) for tid, rows in tracks.groupby("track_id")}


def test_trackmate_division_gap_and_border(trackmate_file):
    tracks = read_trackmate_xml(trackmate_file, spot_features=["MEAN_INTENSITY_CH1"])
    assert list(tracks.columns[:7]) == TRACKS_COLUMNS
    assert "z" not in tracks.columns  # a 2-D movie
    assert set(tracks["id"]) == {1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 14, 20, 21, 22}  # no untracked 99, no track 9
    cells = _by_track(tracks)
    # cells are numbered depth-first, lineage by lineage (roots by start frame): mother, daughters, gap, border
    assert [c["id"].tolist() for c in cells.values()] == [[1, 2, 3], [4, 5], [6, 7], [10, 11, 13, 14], [20, 21, 22]]
    mother, d1, d2, gap, border = cells.values()
    assert mother["parent_track_id"].tolist() == [-1] * 3
    assert mother["parent_id"].tolist() == [-1, 1, 2]
    assert d1["parent_track_id"].tolist() == [1, 1] and d2["parent_track_id"].tolist() == [1, 1]
    assert gap["parent_track_id"].tolist() == [-1] * 4
    assert d1["parent_id"].tolist() == [3, 4] and d2["parent_id"].tolist() == [3, 6]
    assert d1["t"].tolist() == [3, 4]
    assert gap["t"].tolist() == [0, 1, 3, 4]  # the gap stays one track
    assert gap["parent_id"].tolist() == [-1, 10, 11, 13]
    # positions are pixels (um / calibration)
    np.testing.assert_allclose(mother[["y", "x"]].to_numpy(), [[10, 10], [10.5, 11], [11, 12]])
    np.testing.assert_allclose(border["x"], [55, 59, 63])
    assert (tracks["trackmate_track_id"].to_numpy() == [0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 7, 7, 7]).all()
    assert mother["MEAN_INTENSITY_CH1"].tolist() == [100, 110, 120]
    assert d1["MEAN_INTENSITY_CH1"].isna().all()


def test_trackmate_pixel_size_and_unfiltered(trackmate_file):
    # tracked at 0.5 um/px, imported for an image downscaled 2x: positions halve
    half = read_trackmate_xml(trackmate_file, pixel_size=1.0)
    full = read_trackmate_xml(trackmate_file)
    np.testing.assert_allclose(half[["y", "x"]].to_numpy(), full[["y", "x"]].to_numpy() / 2)
    everything = read_trackmate_xml(trackmate_file, filtered_only=False)
    assert {30, 31} <= set(everything["id"])
    image = read_trackmate_image(trackmate_file)
    assert image.shape == (6, 1, 48, 64)
    assert image.pixel_size == (1.0, CAL, CAL)
    assert image.spatial_units == "micron"
    with pytest.raises(ValueError, match="pixel sizes must be positive"):
        read_trackmate_xml(trackmate_file, pixel_size=0)


def test_trackmate_3d_positions_get_z(tmp_path):
    xml = _trackmate_xml([(1, 0, 4.0, 4.0), (2, 1, 4.0, 5.0)], {0: [(1, 2)]}).replace(
        'POSITION_Z="0.0"', 'POSITION_Z="3.0"'
    )
    path = tmp_path / "z.xml"
    path.write_text(xml.replace('voxeldepth="1.0"', 'voxeldepth="1.5"'))
    tracks = read_trackmate_xml(path)
    assert list(tracks.columns[:8]) == [*TRACKS_COLUMNS, "z"]
    assert tracks["z"].tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    ("spots", "tracks", "message"),
    [
        # a merge: spot 3 is linked from two earlier spots
        ([(1, 0, 1, 1), (2, 0, 5, 5), (3, 1, 3, 3)], {0: [(1, 3), (2, 3)]}, r"lines \d+ and \d+: spot 3 .*merge"),
        ([(1, 0, 1, 1)], {4: [(1, 8)]}, r"line \d+: an edge of track 'Track_4' \(TRACK_ID=4\) links spot 8"),
        ([(1, 0, 1, 1), (2, 0, 2, 2)], {0: [(1, 2)]}, r"line \d+: .*links spots 1 and 2, both in frame 0"),
    ],
)
def test_trackmate_graph_errors_name_line_and_track(tmp_path, spots, tracks, message):
    path = tmp_path / "bad.xml"
    path.write_text(_trackmate_xml(spots, tracks))
    with pytest.raises(TrackImportError, match=message):
        read_trackmate_xml(path)


def test_trackmate_file_errors(tmp_path, trackmate_file):
    broken = tmp_path / "broken.xml"
    broken.write_text(trackmate_file.read_text().replace("</AllSpots>", "</AllSpot>"))
    with pytest.raises(TrackImportError, match=r"broken.xml, line \d+: not a well-formed XML"):
        read_trackmate_xml(broken)
    no_x = tmp_path / "no_x.xml"
    no_x.write_text(trackmate_file.read_text().replace('<Spot ID="2" name="s2" FRAME="1" POSITION_X', '<Spot ID="2" X'))
    with pytest.raises(
        TrackImportError, match=r"no_x.xml, line 6: a Spot has no FRAME|no_x.xml, line 6: Spot ID=2 has no FRAME"
    ):
        read_trackmate_xml(no_x)
    twice = tmp_path / "twice.xml"
    twice.write_text(trackmate_file.read_text().replace('Spot ID="99"', 'Spot ID="1"'))
    with pytest.raises(TrackImportError, match=r"line \d+: Spot ID=1 is defined twice"):
        read_trackmate_xml(twice)
    with pytest.raises(TrackImportError, match="no spot has the feature 'AREA'; spots have .*POSITION_X"):
        read_trackmate_xml(trackmate_file, spot_features=["AREA"])
    other = tmp_path / "other.xml"
    other.write_text("<root><a/></root>")
    with pytest.raises(TrackImportError, match="is this a TrackMate XML file"):
        read_trackmate_xml(other)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        read_trackmate_xml(tmp_path / "missing.xml")


# ------------------------------------------------------------------------------------------------- CTC

SHAPE = (32, 40)


def _square(labels, label, y, x, r=2):
    labels[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1] = label


def _ctc_folder(tmp_path, res_track="1 0 2 0\n2 3 5 1\n3 3 5 1\n4 0 5 0\n5 0 2 0\n", skip=None):
    """Label 1 divides into 2 and 3 at frame 3; 4 is missing from frame 2 (a gap); 5 leaves at the right border."""
    folder = tmp_path / "01_RES"
    folder.mkdir(parents=True)
    for t in range(6):
        labels = np.zeros(SHAPE, dtype=np.uint16)
        if t <= 2:
            _square(labels, 1, 8, 8 + t)
        else:
            _square(labels, 2, 5, 10 + t)
            _square(labels, 3, 12, 10 + t)
        if t != 2:
            _square(labels, 4, 25, 10 + t)
        if t <= 2:
            _square(labels, 5, 20, 34 + 3 * t)  # 34, 37, 40: at t=2 only the left two columns are inside
        if skip is not None:
            labels[labels == skip] = 0
        tifffile.imwrite(folder / f"mask{t:03d}.tif", labels)
    (folder / "res_track.txt").write_text(res_track)
    return folder


def test_ctc_division_gap_and_border(tmp_path):
    folder = _ctc_folder(tmp_path)
    tracks = read_ctc_tracks(folder / "res_track.txt")
    assert list(tracks.columns) == TRACKS_COLUMNS
    cells = _by_track(tracks)
    assert cells[1]["t"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(cells[1][["y", "x"]].to_numpy(), [[8, 8], [8, 9], [8, 10]])
    assert cells[2]["parent_track_id"].tolist() == [1, 1, 1]
    assert cells[2]["parent_id"].iloc[0] == cells[1]["id"].iloc[-1] == cells[3]["parent_id"].iloc[0]
    assert cells[4]["t"].tolist() == [0, 1, 3, 4, 5]  # the gap
    assert cells[4]["parent_id"].tolist()[1:] == cells[4]["id"].tolist()[:-1]
    # the border cell: centroid of what is inside the image, then the track ends
    assert cells[5]["t"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(cells[5]["x"], [34, 37, 38.5])
    # ids are unique and numbered in time order
    assert tracks["id"].is_unique
    assert (tracks.sort_values("id")["t"].diff().dropna() >= 0).all()


def test_ctc_ground_truth_names_and_labels_dir(tmp_path):
    folder = _ctc_folder(tmp_path)
    truth = tmp_path / "01_GT" / "TRA"
    truth.mkdir(parents=True)
    for t, path in find_ctc_label_images(folder).items():
        path.rename(truth / f"man_track{t:03d}.tif")
    (folder / "res_track.txt").rename(truth / "man_track.txt")
    tracks = read_ctc_tracks(truth / "man_track.txt")
    assert tracks["track_id"].nunique() == 5
    # label images may live elsewhere than the track file
    (truth / "man_track.txt").rename(tmp_path / "man_track.txt")
    assert len(read_ctc_tracks(tmp_path / "man_track.txt", labels_dir=truth)) == len(tracks)


@pytest.mark.parametrize(
    ("res_track", "message"),
    [
        ("1 0 2 0\n2 3 5 1\n3 3 5 1\n4 0 5 0\n", r"mask000.tif \(t=0\): label\(s\) \[5\] are not listed"),
        ("1 0 1 0\n2 3 5 1\n3 3 5 1\n4 0 5 0\n5 0 2 0\n", r"line 1: track 1 spans frames 0-1 but is in mask002.tif"),
        (
            "1 0 2 0\n2 3 5 1\n3 3 5 1\n4 0 5 0\n5 0 2 0\n6 1 2 0\n",
            r"line 6: track 6 \(frames 1-2\) is in no label image",
        ),
        ("1 0 2 0\n2 3 5 1\n3 3 5 7\n4 0 5 0\n5 0 2 0\n", r"line 3: parent 7 of track 3 is not a track"),
        ("1 0 3 0\n2 3 5 1\n3 3 5 1\n4 0 5 0\n5 0 2 0\n", r"line 2: track 2 begins at frame 3 but its parent 1 ends"),
        ("1 0 2 0\n2 3 5\n", r"line 2: expected four non-negative integers 'L B E P', got '2 3 5'"),
        ("1 0 2 0\n2 5 3 1\n", r"line 2: track 2 ends \(E=3\) before it begins \(B=5\)"),
        ("1 0 2 0\n1 3 5 0\n", r"lines 1, 2: track 1 is listed twice"),
    ],
)
def test_ctc_errors_name_file_and_line(tmp_path, res_track, message):
    folder = _ctc_folder(tmp_path, res_track=res_track)
    with pytest.raises(TrackImportError, match=message):
        read_ctc_tracks(folder / "res_track.txt")


def test_ctc_label_image_discovery_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrackImportError, match="no CTC label images"):
        find_ctc_label_images(empty)
    folder = _ctc_folder(tmp_path)
    tifffile.imwrite(folder / "man_track000.tif", np.zeros(SHAPE, np.uint16))
    with pytest.raises(TrackImportError, match="holds both result"):
        find_ctc_label_images(folder)
    listing = read_res_track(_ctc_folder(tmp_path / "again") / "res_track.txt")
    assert listing[["label", "begin", "end", "parent"]].to_numpy().tolist()[1] == [2, 3, 5, 1]


# ------------------------------------------------------------------------------------------ generic table

TABLE = """track_id,t,y,x,parent_track_id
1,0,10.0,10.0,
1,1,10.5,11.0,
1,2,11.0,12.0,
2,3,8.0,12.0,1
2,4,7.0,12.5,1
3,3,14.0,12.0,1
3,4,15.0,12.5,1
5,0,30.0,30.0,-1
5,1,30.0,31.0,-1
5,3,30.0,33.0,-1
7,0,40.0,55.0,
7,1,40.0,61.0,
7,2,40.0,67.0,
"""


def test_table_division_gap_and_border(tmp_path, caplog):
    path = tmp_path / "tracks.csv"
    path.write_text(TABLE)
    tracks = read_tracks_table(path)
    assert list(tracks.columns) == TRACKS_COLUMNS
    cells = _by_track(tracks)
    assert cells[2]["parent_id"].iloc[0] == cells[1]["id"].iloc[-1]
    assert cells[5]["t"].tolist() == [0, 1, 3]
    assert cells[1]["parent_track_id"].tolist() == [-1, -1, -1]
    # the loaders' image is 48 x 64: the border cell's last two frames are outside; import keeps them and says so
    outside = detections_outside(tracks, (48, 64))
    assert tracks.loc[outside, ["track_id", "t"]].to_numpy().tolist() == [[7, 2]]
    with caplog.at_level(logging.WARNING):
        written = import_tracks(path, tmp_path / "out", "B/3/1", image_shape=(48, 64))
    assert "1 of 13 detections (1 tracks) lie outside the 48x64 image of B/3/1" in caplog.text
    assert written == tmp_path / "out" / "B" / "3" / "1" / "tracks.csv"
    pd.testing.assert_frame_equal(pd.read_csv(written), tracks)


def test_table_keeps_ids_extra_columns_z_and_maps_names(tmp_path):
    path = tmp_path / "ultrack.tsv"
    path.write_text("TrackID\tframe\tz\ty\tx\tid\tparent_track_id\tparent_id\tarea\n")
    with open(path, "a") as stream:
        stream.write("1\t0\t2\t4\t4\t1000001\t-1\t-1\t50\n1\t1\t2\t5\t4\t2000001\t-1\t1000001\t51\n")
    tracks = read_tracks(path, columns={"track_id": "TrackID", "t": "frame"}, pixel_size=(2.0, 0.5, 0.5))
    assert list(tracks.columns) == [*TRACKS_COLUMNS, "z", "area"]
    assert tracks["id"].tolist() == [1000001, 2000001]
    assert tracks["parent_id"].tolist() == [-1, 1000001]
    assert tracks[["z", "y", "x"]].to_numpy().tolist() == [[1, 8, 8], [1, 10, 8]]
    with pytest.raises(TrackImportError, match=r"column\(s\) \['TIME'\] named in columns= are not in the file"):
        read_tracks_table(path, columns={"t": "TIME"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("track_id,t,y\n1,0,3\n", r"missing column\(s\) \['x'\]; it has \['track_id', 't', 'y'\]. Name the file's"),
        ("track_id,t,y,x\n1,0,3,3\n1,1.5,3,3\n", r"tracks.csv, line 3: column 't' must hold integers, got 1.5"),
        ("track_id,t,y,x\n1,0,3,3\nA,1,3,3\n", r"line 3: column 'track_id' must hold integers, got 'A'"),
        ("track_id,t,y,x\n1,-1,3,3\n", r"line 2: frame t must be >= 0"),
        ("track_id,t,y,x\n1,0,3,3\n1,1,,3\n", r"line 3: coordinate 'y' must be a finite number"),
        ("track_id,t,y,x\n1,0,3,3\n2,0,3,3\n1,0,4,4\n", r"lines 2, 4: track 1 has 2 detections at t=0"),
        (
            "track_id,t,y,x,parent_track_id\n1,0,3,3,\n2,1,3,3,1\n2,2,3,3,3\n3,0,1,1,\n",
            r"lines 3, 4: track 2 has different parent_track_id values \(\[1, 3\]\)",
        ),
        (
            "track_id,t,y,x,parent_track_id\n1,0,3,3,\n1,1,3,3,\n2,1,3,3,1\n",
            r"line 4: track 2 starts at t=1 but its parent track 1 lasts until t=1",
        ),
        ("track_id,t,y,x,parent_track_id\n1,0,3,3,1\n", r"line 2: track 1 names itself as its parent track"),
        ("track_id,t,y,x,parent_track_id\n1,0,3,3,x\n", r"line 2: column 'parent_track_id' must hold integers"),
        ("track_id,t,y,x,id\n1,0,3,3,7\n1,1,3,3,7\n", r"lines 2, 3: detection id 7 is used 2 times"),
    ],
)
def test_table_errors_name_file_line_and_track(tmp_path, body, message):
    path = tmp_path / "tracks.csv"
    path.write_text(body)
    with pytest.raises(TrackImportError, match=message):
        read_tracks_table(path)


def test_table_dangling_parent_becomes_a_root(tmp_path, caplog):
    path = tmp_path / "tracks.csv"
    path.write_text("track_id,t,y,x,parent_track_id\n4,0,3,3,99\n4,1,3,3,99\n")
    with caplog.at_level(logging.WARNING):
        tracks = read_tracks_table(path)
    assert tracks["parent_track_id"].tolist() == [-1, -1]
    assert tracks["parent_id"].tolist() == [-1, tracks["id"].iloc[0]]
    assert "track 4 -> 99" in caplog.text


# ----------------------------------------------------------------------------------- dispatch and writing


def test_detect_format_and_read_tracks_options(tmp_path, trackmate_file):
    folder = _ctc_folder(tmp_path)
    table = tmp_path / "t.csv"
    table.write_text(TABLE)
    assert detect_track_format(trackmate_file) == "trackmate"
    assert detect_track_format(folder / "res_track.txt") == "ctc"
    assert detect_track_format(table) == "table"
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match="cannot tell the tracks format"):
        detect_track_format(tmp_path / "notes.txt")
    assert len(read_tracks(folder / "res_track.txt")) == len(read_ctc_tracks(folder / "res_track.txt"))
    with pytest.raises(ValueError, match=r"option\(s\) \['spot_features'\] do not apply to the table format"):
        read_tracks(table, spot_features=["AREA"])
    with pytest.raises(ValueError, match="unknown tracks format 'xls'"):
        read_tracks(table, "xls")


def test_write_tracks_csv_layout_and_overwrite(tmp_path):
    tracks = finalize_tracks(pd.DataFrame({"track_id": [3, 3], "t": [0, 1], "y": [1.0, 2.0], "x": [1.0, 2.0]}))
    path = write_tracks_csv(tracks, tmp_path, "/A/1/0/")
    assert path == tracks_csv_path(tmp_path, "A/1/0") == tmp_path / "A" / "1" / "0" / "tracks.csv"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_tracks_csv(tracks, tmp_path, "A/1/0")
    write_tracks_csv(tracks.assign(y=[5.0, 6.0]), tmp_path, "A/1/0", overwrite=True)
    assert pd.read_csv(path)["y"].tolist() == [5.0, 6.0]
    (path.parent / "old_tracks.csv").write_text("x\n")
    with pytest.raises(FileExistsError, match=r"already holds \['old_tracks.csv'\]"):
        write_tracks_csv(tracks, tmp_path, "A/1/0", overwrite=True)
    with pytest.raises(ValueError, match="FOV name must look like 'A/1/0'"):
        write_tracks_csv(tracks, tmp_path, "A/1")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['parent_id'\]"):
        write_tracks_csv(tracks.drop(columns="parent_id"), tmp_path, "A/1/1")


def test_finalize_numbers_ids_in_time_order_and_sorts():
    raw = pd.DataFrame({"track_id": [2, 1, 2, 1], "t": [1, 1, 0, 0], "y": [0.0] * 4, "x": [0.0] * 4})
    tracks = finalize_tracks(raw)
    assert tracks[["track_id", "t", "id"]].to_numpy().tolist() == [[1, 0, 1], [1, 1, 3], [2, 0, 2], [2, 1, 4]]
    empty = finalize_tracks(raw.iloc[:0])
    assert list(empty.columns) == TRACKS_COLUMNS and len(empty) == 0
