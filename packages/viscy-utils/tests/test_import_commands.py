"""``viscy import-tracks`` / ``viscy import-images``: run without Lightning, write the layouts, exit 2 on bad input."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from iohub.ngff import open_ome_zarr

from viscy_utils.cli import SUBCOMMAND_HELP, TOOL_SUBCOMMANDS, run_cli

TABLE = "track_id,t,y,x,parent_track_id\n1,0,5,5,\n1,1,5,6,\n2,2,4,7,1\n3,2,6,7,1\n"


@pytest.fixture
def plate_with_tracks(tmp_path):
    movie = np.arange(3 * 2 * 12 * 16, dtype=np.uint16).reshape(3, 2, 12, 16)
    tiff = tmp_path / "movie.tif"
    tifffile.imwrite(tiff, movie, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TCYX", "unit": "um"})
    table = tmp_path / "cells.csv"
    table.write_text(TABLE)
    return tiff, table, movie


def test_tool_subcommands_are_listed_in_the_help():
    assert set(TOOL_SUBCOMMANDS) <= set(SUBCOMMAND_HELP)
    out = subprocess.run([sys.executable, "-m", "viscy_utils.cli", "--help"], capture_output=True, text=True).stdout
    assert "    import-tracks " in out and "    import-images " in out


def test_import_images_then_tracks_through_the_cli(tmp_path, plate_with_tracks, capsys):
    tiff, table, movie = plate_with_tracks
    plate = tmp_path / "plate.zarr"
    names = ["--channel-names", "cyan", "magenta"]
    assert (
        run_cli(["import-images", str(tiff), "--plate", str(plate), "--fov", "B/3/0", *names, "--no-progress"]) is None
    )
    out = capsys.readouterr().out
    assert f"-> {plate}/B/3/0: shape (3, 2, 1, 12, 16) (T, C, Z, Y, X), channels ['cyan', 'magenta']" in out
    assert "voxel 1 x 0.5 x 0.5 um" in out
    with open_ome_zarr(plate, layout="hcs", mode="r") as opened:
        np.testing.assert_array_equal(opened["B/3/0"]["0"][:, :, 0], movie)
        assert opened["B/3/0"].scale[-2:] == [0.5, 0.5]
    run_cli(["import-tracks", str(table), "-o", str(tmp_path / "tracks"), "--fov", "B/3/0", "--plate", str(plate)])
    written = tmp_path / "tracks" / "B" / "3" / "0" / "tracks.csv"
    assert f"{table} -> {written}" in capsys.readouterr().out
    tracks = pd.read_csv(written)
    assert tracks["parent_track_id"].tolist() == [-1, -1, 1, 1]
    assert tracks["parent_id"].tolist() == [-1, 1, 2, 2]


def test_import_tracks_several_files_and_column_names(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.tsv"
    first.write_text(TABLE.replace("t,", "frame,", 1))
    second.write_text(TABLE.replace("t,", "frame,", 1).replace(",", "\t"))
    paths = run_cli(
        ["import-tracks", str(first), str(second), "-o", str(tmp_path / "out"), "--fov", "A/1/0", "--fov", "A/1/1"]
        + ["--column", "t=frame"]
    )
    assert paths is None
    assert len(pd.read_csv(tmp_path / "out" / "A" / "1" / "0" / "tracks.csv")) == 4
    assert len(pd.read_csv(tmp_path / "out" / "A" / "1" / "1" / "tracks.csv")) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{bad}", "-o", "{out}"], r"bad.csv, line 3: column 't' must hold integers, got 'x'"),
        (["{table}", "{table}", "-o", "{out}"], r"got 2 input file\(s\) but 1 --fov"),
        (["{table}", "-o", "{out}", "--fov", "A/1"], "FOV name must look like 'A/1/0'"),
        (["{table}", "-o", "{out}", "--column", "t"], "expected NAME=FILE_COLUMN"),
        (["{table}", "-o", "{out}", "--spot-feature", "AREA"], r"option\(s\) \['spot_features'\] do not apply"),
        (["{table}", "-o", "{out}", "--plate", "{plate}", "--fov", "C/1/0"], r"has no position\(s\) \['C/1/0'\]"),
        (["{table}", "-o", "{out}", "--plate", "{out}/nothing.zarr"], "cannot open .* as an HCS OME-Zarr plate"),
    ],
)
def test_import_tracks_errors_exit_2_with_the_reason(tmp_path, plate_with_tracks, capsys, args, message):
    tiff, table, _ = plate_with_tracks
    bad = tmp_path / "bad.csv"
    bad.write_text("track_id,t,y,x\n1,0,1,1\n1,x,1,1\n")
    plate = tmp_path / "plate.zarr"
    run_cli(["import-images", str(tiff), "--plate", str(plate), "--no-progress"])
    fill = {"bad": bad, "table": table, "out": tmp_path / "out", "plate": plate}
    with pytest.raises(SystemExit) as exc:
        run_cli(["import-tracks", *(a.format(**fill) for a in args)])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_import_images_errors_exit_2(tmp_path, plate_with_tracks, capsys):
    tiff, _, _ = plate_with_tracks
    with pytest.raises(SystemExit) as exc:
        run_cli(["import-images", str(tiff), "--plate", str(tmp_path / "p.zarr"), "--channel-names", "only_one"])
    assert exc.value.code == 2
    assert "channel_names name 1 channel(s) ['only_one'] but" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_cli(["import-images", str(tmp_path / "missing.tif"), "--plate", str(tmp_path / "p.zarr")])
    assert exc.value.code == 2
    assert "TIFF file not found" in capsys.readouterr().err
