"""The per-FOV tracks table: validation, lineage columns and the on-disk layout.

Every importer in :mod:`viscy_data.importers` ends here. A tracks table has one row per detection
(one cell at one time point) with these columns:

``track_id``
    Integer id of a track: one cell between its birth (or first frame) and its division (or last frame).
``t``
    Frame index (0-based).
``y``, ``x`` (and ``z`` for volumes)
    Centroid in pixels of the image the tracks belong to.
``id``
    Integer id of the detection, unique within the FOV.
``parent_track_id``
    Track id of the mother for the daughters of a division, -1 for tracks without a mother.
``parent_id``
    Id of the previous detection of the same cell: the previous row of the track, or the mother's last
    detection for a daughter's first row; -1 for the first row of a track without a mother.

(:data:`TRACKS_COLUMNS`). These are the conventions of ultrack; the loaders (``TripletDataModule``,
DynaCLR's ``MultiExperimentIndex``) read them from ``<tracks_path>/<row>/<col>/<fov>/*.csv``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "TRACKS_COLUMNS",
    "TrackImportError",
    "detections_outside",
    "finalize_tracks",
    "split_fov_name",
    "tracks_csv_path",
    "write_tracks_csv",
]

_logger = logging.getLogger(__name__)

#: columns of the per-FOV tracks CSVs, in order; ``z`` (volumes) follows them when present
TRACKS_COLUMNS = ["track_id", "t", "y", "x", "id", "parent_track_id", "parent_id"]
#: file name the importers write in each FOV folder
TRACKS_CSV_NAME = "tracks.csv"
#: internal column with the source line of each row, used in error messages and dropped on output
LINE = "_line"


class TrackImportError(ValueError):
    """Malformed tracking input; the message names the file, the line or the track at fault."""


def _where(source: str | Path, lines: Sequence[int] | np.ndarray | None = None) -> str:
    """``"file"``, ``"file, line 7"`` or ``"file, lines 7, 9"`` for error messages."""
    if lines is None or len(lines) == 0:
        return str(source)
    lines = [int(v) for v in lines]
    shown = ", ".join(str(v) for v in lines[:5]) + (", ..." if len(lines) > 5 else "")
    return f"{source}, line{'s' if len(lines) > 1 else ''} {shown}"


def _integer_column(table: pd.DataFrame, column: str, source: str | Path) -> np.ndarray:
    """Return the column as int64, or raise an error naming the first rows that are not integers."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        rows = np.flatnonzero(bad)
        example = _scalar(table[column].iloc[rows[0]])
        raise TrackImportError(
            f"{_where(source, _lines(table, rows))}: column '{column}' must hold integers, got {example!r}"
        )
    return values.astype(np.int64)


def _scalar(value):
    """Return a numpy scalar as a Python value (messages then show ``1.5``, not ``np.float64(1.5)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _lines(table: pd.DataFrame, rows: np.ndarray | Sequence[int]) -> list[int] | None:
    if LINE not in table.columns:
        return None
    return [int(v) for v in table[LINE].to_numpy()[np.asarray(rows, dtype=np.int64)]]


def finalize_tracks(raw: pd.DataFrame, source: str | Path = "<table>") -> pd.DataFrame:
    """Validate a raw tracks table and give it the lineage columns of the tracks CSV layout.

    Parameters
    ----------
    raw : pandas.DataFrame
        One row per detection with ``track_id, t, y, x`` and optionally ``z``, ``parent_track_id``
        (NaN or a negative value for tracks without a mother; constant within a track) and ``id``
        (unique integers; assigned in time order when absent). Other columns are carried along.
        ``parent_id`` is recomputed from the tracks. A ``_line`` column, if present, holds the source
        line of each row for error messages and is dropped.
    source : str or pathlib.Path
        Name of the input, used in error messages.

    Returns
    -------
    pandas.DataFrame
        The columns ``track_id, t, y, x, id, parent_track_id, parent_id``, then ``z`` if given, then
        the other columns; sorted by ``track_id`` and ``t``, index 0..N-1.

    Raises
    ------
    TrackImportError
        Missing columns, non-integer ids or frames, negative frames, non-finite coordinates, two
        detections of one track in one frame, a track whose ``parent_track_id`` changes, a track that is
        its own mother, a daughter that starts before its mother's last frame, duplicate ids. The
        message names the source, the lines and the tracks at fault.
    """
    missing = [c for c in ("track_id", "t", "y", "x") if c not in raw.columns]
    if missing:
        found = [c for c in raw.columns if c != LINE]
        raise TrackImportError(f"{source}: missing column(s) {missing}; found {found}")
    table = raw.reset_index(drop=True).copy()
    table["track_id"] = _integer_column(table, "track_id", source)
    table["t"] = _integer_column(table, "t", source)
    negative = np.flatnonzero(table["t"].to_numpy() < 0)
    if negative.size:
        raise TrackImportError(
            f"{_where(source, _lines(table, negative))}: frame t must be >= 0, "
            f"got {_scalar(table['t'].iloc[negative[0]])}"
        )
    for axis in ("z", "y", "x"):
        if axis not in table.columns:
            continue
        values = pd.to_numeric(table[axis], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise TrackImportError(
                f"{_where(source, _lines(table, bad))}: coordinate '{axis}' must be a finite number, "
                f"got {_scalar(table[axis].iloc[bad[0]])!r}"
            )
        table[axis] = values

    # one detection per track and frame
    dup = table.duplicated(["track_id", "t"], keep=False).to_numpy()
    if dup.any():
        row = np.flatnonzero(dup)[0]
        track, t = int(table["track_id"].iloc[row]), int(table["t"].iloc[row])
        rows = np.flatnonzero(dup & (table["track_id"] == track).to_numpy() & (table["t"] == t).to_numpy())
        raise TrackImportError(
            f"{_where(source, _lines(table, rows))}: track {track} has {rows.size} detections "
            f"at t={t}; a track is one cell, with at most one detection per frame"
        )

    table = table.sort_values(["track_id", "t"], kind="stable").reset_index(drop=True)
    track_ids = table["track_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, track_ids[1:] != track_ids[:-1]]) if len(table) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(table)] - 1 if len(table) else np.zeros(0, int)
    unique_tracks = track_ids[starts]
    first_t = table["t"].to_numpy()[starts]
    last_t = table["t"].to_numpy()[ends]

    parents = _parent_tracks(table, starts, unique_tracks, source)
    has_parent = parents >= 0
    position = pd.Index(unique_tracks).get_indexer(parents[has_parent])
    dangling = position < 0
    if dangling.any():
        orphans = unique_tracks[has_parent][dangling]
        _logger.warning(
            "%s: %d track(s) name a parent track that is not in the table (e.g. track %d -> %d); "
            "they are treated as tracks without a mother",
            source,
            orphans.size,
            orphans[0],
            parents[has_parent][dangling][0],
        )
        parents[np.flatnonzero(has_parent)[dangling]] = -1
        has_parent = parents >= 0
        position = pd.Index(unique_tracks).get_indexer(parents[has_parent])
    children = np.flatnonzero(has_parent)
    selfish = children[unique_tracks[children] == parents[children]]
    if selfish.size:
        tid = unique_tracks[selfish[0]]
        raise TrackImportError(
            f"{_where(source, _lines(table, [starts[selfish[0]]]))}: track {tid} names itself as its parent track"
        )
    early = children[last_t[position] >= first_t[children]]
    if early.size:
        child = early[0]
        mother = pd.Index(unique_tracks).get_loc(parents[child])
        raise TrackImportError(
            f"{_where(source, _lines(table, [starts[child]]))}: track {unique_tracks[child]} starts at "
            f"t={first_t[child]} but its parent track {parents[child]} lasts until t={last_t[mother]}; "
            "a daughter must start after its mother's last frame"
        )

    # detection ids: kept when given, otherwise numbered in time order (as ultrack does)
    if "id" in table.columns:
        ids = _integer_column(table, "id", source)
        dup_id = pd.Series(ids).duplicated(keep=False).to_numpy()
        if dup_id.any():
            rows = np.flatnonzero(dup_id & (ids == ids[dup_id][0]))
            raise TrackImportError(
                f"{_where(source, _lines(table, rows))}: detection id {ids[rows[0]]} is used {rows.size} times; "
                "ids must be unique within a FOV"
            )
    else:
        order = np.lexsort((track_ids, table["t"].to_numpy()))
        ids = np.empty(len(table), dtype=np.int64)
        ids[order] = np.arange(1, len(table) + 1)
    table["id"] = ids

    # lineage columns: previous detection of the same cell, the mother's last one for a daughter's first row
    parent_track = np.repeat(parents, ends - starts + 1)
    parent_id = np.r_[-1, ids[:-1]] if len(table) else np.zeros(0, np.int64)
    mother_last_id = np.full(unique_tracks.size, -1, dtype=np.int64)
    mother_last_id[children] = ids[ends[position]]
    parent_id[starts] = mother_last_id
    table["parent_track_id"] = parent_track.astype(np.int64)
    table["parent_id"] = parent_id.astype(np.int64)

    for axis in ("z", "y", "x"):
        if axis in table.columns:
            table[axis] = table[axis].round(3)
    leading = [*TRACKS_COLUMNS, *(["z"] if "z" in table.columns else [])]
    extras = [c for c in table.columns if c not in leading and c != LINE]
    return table[leading + extras]


def _parent_tracks(table: pd.DataFrame, starts: np.ndarray, unique_tracks: np.ndarray, source) -> np.ndarray:
    """Parent track of every track (-1 for none), checking that it is constant within each track."""
    if "parent_track_id" not in table.columns:
        return np.full(unique_tracks.size, -1, dtype=np.int64)
    values = pd.to_numeric(table["parent_track_id"], errors="coerce").to_numpy(dtype=np.float64)
    empty = table["parent_track_id"].isna().to_numpy()
    unreadable = np.isnan(values) & ~empty
    bad = np.flatnonzero(unreadable | (~np.isnan(values) & ((values != np.round(values)) | ~np.isfinite(values))))
    if bad.size:
        raise TrackImportError(
            f"{_where(source, _lines(table, bad))}: column 'parent_track_id' must hold integers (or be empty "
            f"for tracks without a mother), got {_scalar(table['parent_track_id'].iloc[bad[0]])!r}"
        )
    values = np.where(np.isnan(values) | (values < 0), -1, values).astype(np.int64)
    per_track = np.repeat(values[starts], np.diff(np.r_[starts, len(table)]))
    changed = np.flatnonzero(values != per_track)
    if changed.size:
        tid = table["track_id"].iloc[changed[0]]
        rows = np.flatnonzero(table["track_id"].to_numpy() == tid)
        raise TrackImportError(
            f"{_where(source, _lines(table, rows))}: track {tid} has different parent_track_id values "
            f"({sorted(set(values[rows].tolist()))}); a track has one mother"
        )
    return values[starts].copy()


def split_fov_name(fov_name: str) -> tuple[str, str, str]:
    """Split ``"A/1/0"`` into row, column and FOV names.

    Raises
    ------
    ValueError
        If the name does not have three non-empty parts.
    """
    parts = str(fov_name).strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"FOV name must look like 'A/1/0' (row/column/fov), got {fov_name!r}")
    return parts[0], parts[1], parts[2]


def tracks_csv_path(tracks_root: str | Path, fov_name: str) -> Path:
    """Where the tracks of one FOV are written: ``<tracks_root>/<row>/<col>/<fov>/tracks.csv``."""
    return Path(tracks_root).joinpath(*split_fov_name(fov_name), TRACKS_CSV_NAME)


def write_tracks_csv(tracks: pd.DataFrame, tracks_root: str | Path, fov_name: str, *, overwrite: bool = False) -> Path:
    """Write one FOV's tracks where the loaders look for them.

    The file is ``<tracks_root>/<row>/<col>/<fov>/tracks.csv``; it is written to a temporary file and
    renamed, so an interrupted write never leaves a truncated table.

    Parameters
    ----------
    tracks : pandas.DataFrame
        A table from one of the readers (or :func:`finalize_tracks`).
    tracks_root : str or pathlib.Path
        Root of the tracks layout (the ``tracks_path`` of a DataModule or experiment); may be the
        OME-Zarr plate itself.
    fov_name : str
        FOV the tracks belong to, e.g. ``"A/1/0"``.
    overwrite : bool, default False
        Replace an existing ``tracks.csv``.

    Returns
    -------
    pathlib.Path
        The CSV written.

    Raises
    ------
    FileExistsError
        If ``tracks.csv`` exists and ``overwrite`` is False, or if the folder holds another CSV (the
        loaders read only the first CSV of the folder, so two would be ambiguous).
    ValueError
        If ``tracks`` lacks a column of the layout or ``fov_name`` is malformed.
    """
    missing = [c for c in TRACKS_COLUMNS if c not in tracks.columns]
    if missing:
        raise ValueError(f"tracks lack column(s) {missing}; build them with a viscy_data.importers reader")
    path = tracks_csv_path(tracks_root, fov_name)
    others = sorted(p.name for p in path.parent.glob("*.csv") if p.name != path.name) if path.parent.is_dir() else []
    if others:
        raise FileExistsError(
            f"{path.parent} already holds {others}; the loaders read only the first CSV of a FOV folder, "
            "so remove or move it first"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tracks-", suffix=".csv.tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            tracks.to_csv(stream, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def detections_outside(tracks: pd.DataFrame, image_shape: Sequence[int]) -> np.ndarray:
    """Boolean mask of detections whose centroid lies outside an image.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Tracks with ``y, x`` (and ``z`` when ``image_shape`` has three values).
    image_shape : sequence of int
        ``(Y, X)`` or ``(Z, Y, X)`` of the FOV (the last axes of its ``(T, C, Z, Y, X)`` array).

    Returns
    -------
    numpy.ndarray
        True where a centroid is below 0 or at/after the image size on some axis; the loaders skip
        those rows.
    """
    shape = tuple(int(s) for s in image_shape)
    axes = ("z", "y", "x")[-len(shape) :]
    outside = np.zeros(len(tracks), dtype=bool)
    for axis, size in zip(axes, shape):
        if axis in tracks.columns:
            values = tracks[axis].to_numpy(dtype=np.float64)
            outside |= (values < 0) | (values >= size)
    return outside
