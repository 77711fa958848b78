"""One entry point for every tracks format: detect the format, read, check against the image, write."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from viscy_data.importers.ctc import read_ctc_tracks
from viscy_data.importers.table import read_tracks_table
from viscy_data.importers.trackmate import read_trackmate_xml
from viscy_data.importers.tracks import detections_outside, write_tracks_csv

__all__ = ["TRACK_FORMATS", "TrackFormat", "detect_track_format", "import_tracks", "read_tracks"]

_logger = logging.getLogger(__name__)

TrackFormat = Literal["trackmate", "ctc", "table"]
#: format -> what it reads
TRACK_FORMATS: dict[str, str] = {
    "trackmate": "TrackMate XML (.xml)",
    "ctc": "Cell Tracking Challenge res_track.txt / man_track.txt with mask*.tif / man_track*.tif label images",
    "table": "CSV/TSV with track_id, t, y, x[, z, parent_track_id, id] (ultrack, napari, spreadsheets)",
}


def detect_track_format(path: str | Path) -> TrackFormat:
    """Guess the format of a tracks file from its name and first bytes.

    Parameters
    ----------
    path : str or pathlib.Path
        Tracks file.

    Returns
    -------
    {"trackmate", "ctc", "table"}
        ``.xml`` files are TrackMate; ``.txt`` files whose first line is four integers are CTC;
        ``.csv``/``.tsv``/``.tab`` files are tables.

    Raises
    ------
    ValueError
        If the format cannot be told; pass it explicitly then.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "trackmate"
    if suffix in (".csv", ".tsv", ".tab"):
        return "table"
    if suffix == ".txt" and path.is_file():
        with open(path) as stream:
            first = next((line for line in stream if line.strip()), "")
        fields = first.split()
        if len(fields) == 4 and all(f.isdigit() for f in fields):
            return "ctc"
    raise ValueError(f"cannot tell the tracks format of {path}; choose one of {sorted(TRACK_FORMATS)}")


def read_tracks(
    path: str | Path,
    format: TrackFormat | Literal["auto"] = "auto",  # noqa: A002 - the name users know from the CLI
    *,
    pixel_size: float | Sequence[float] | None = None,
    spot_features: Sequence[str] = (),
    labels_dir: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read tracks of one FOV in any supported format into a tracks table.

    Parameters
    ----------
    path : str or pathlib.Path
        The tracks file.
    format : {"auto", "trackmate", "ctc", "table"}, default "auto"
        Input format; ``"auto"`` uses :func:`detect_track_format`.
    pixel_size : float or sequence of float, optional
        Pixel size that turns physical coordinates into pixels (TrackMate: default the file's own
        calibration; table: default none, coordinates are pixels). Not used by CTC (label images are
        in pixels).
    spot_features : sequence of str, default ()
        TrackMate spot features to keep as columns.
    labels_dir : str or pathlib.Path, optional
        CTC label image folder (default: next to the track file).
    columns : mapping of str to str, optional
        Table column names, layout name -> file name.

    Returns
    -------
    pandas.DataFrame
        Tracks table (see :func:`~viscy_data.importers.finalize_tracks`).

    Raises
    ------
    ValueError
        If an option does not apply to the format (e.g. ``spot_features`` for a table).
    """
    kind = detect_track_format(path) if format == "auto" else format
    if kind not in TRACK_FORMATS:
        raise ValueError(f"unknown tracks format {format!r}; choose one of {sorted(TRACK_FORMATS)}")
    unused = {
        "pixel_size": pixel_size is not None and kind == "ctc",
        "spot_features": bool(spot_features) and kind != "trackmate",
        "labels_dir": labels_dir is not None and kind != "ctc",
        "columns": bool(columns) and kind != "table",
    }
    wrong = [name for name, given in unused.items() if given]
    if wrong:
        raise ValueError(f"option(s) {wrong} do not apply to the {kind} format ({TRACK_FORMATS[kind]})")
    if kind == "trackmate":
        return read_trackmate_xml(path, pixel_size=pixel_size, spot_features=spot_features)
    if kind == "ctc":
        return read_ctc_tracks(path, labels_dir=labels_dir)
    return read_tracks_table(path, columns=columns, pixel_size=pixel_size)


def import_tracks(
    path: str | Path,
    tracks_root: str | Path,
    fov_name: str,
    format: TrackFormat | Literal["auto"] = "auto",  # noqa: A002
    *,
    image_shape: Sequence[int] | None = None,
    overwrite: bool = False,
    **read_kwargs,
) -> Path:
    """Read one FOV's tracks and write them as ``<tracks_root>/<row>/<col>/<fov>/tracks.csv``.

    Parameters
    ----------
    path : str or pathlib.Path
        Tracks file (TrackMate XML, CTC ``res_track.txt`` or a table).
    tracks_root : str or pathlib.Path
        Root of the tracks layout (e.g. the plate itself, or a ``tracks/`` folder).
    fov_name : str
        FOV of the tracks, e.g. ``"A/1/0"``.
    format : {"auto", "trackmate", "ctc", "table"}, default "auto"
        Input format.
    image_shape : sequence of int, optional
        ``(Y, X)`` or ``(Z, Y, X)`` of the FOV's image: detections outside it are counted and a warning
        names them (they are kept; the loaders skip them). A warning about most detections usually
        means a wrong ``pixel_size``.
    overwrite : bool, default False
        Replace an existing ``tracks.csv``.
    **read_kwargs
        Options of :func:`read_tracks` (``pixel_size``, ``spot_features``, ``labels_dir``, ``columns``).

    Returns
    -------
    pathlib.Path
        The CSV written.
    """
    tracks = read_tracks(path, format, **read_kwargs)
    if image_shape is not None:
        outside = detections_outside(tracks, image_shape)
        if outside.any():
            _logger.warning(
                "%s: %d of %d detections (%d tracks) lie outside the %s image of %s; the loaders skip them%s",
                path,
                int(outside.sum()),
                len(tracks),
                tracks.loc[outside, "track_id"].nunique(),
                "x".join(str(int(s)) for s in image_shape),
                fov_name,
                " (most are outside: is the pixel size right?)" if outside.mean() > 0.5 else "",
            )
    return write_tracks_csv(tracks, tracks_root, fov_name, overwrite=overwrite)
