"""Read a generic tracks table (``track_id, t, y, x[, parent_track_id]``), as ultrack or napari users write it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data.importers.tracks import LINE, TrackImportError, finalize_tracks

__all__ = ["read_tracks_table"]


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def read_tracks_table(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    pixel_size: float | Sequence[float] | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV with one row per detection into a tracks table.

    Parameters
    ----------
    path : str or pathlib.Path
        Table with a header. Needs ``track_id, t, y, x``; may have ``z``, ``parent_track_id`` (empty,
        NaN or negative for tracks without a mother), ``id`` (unique detection ids, kept) and any other
        columns (carried along). ``parent_id`` is recomputed from the tracks. ``.tsv``/``.tab`` files
        are tab-separated, others comma-separated. ultrack's ``tracks.csv`` (``to_tracks_layer``) and
        napari Tracks layer data ``[track_id, t, (z), y, x]`` saved with a header read as they are.
    columns : mapping of str to str, optional
        Names of the file's columns for the layout's names, e.g. ``{"t": "frame", "track_id": "TrackID"}``.
    pixel_size : float or sequence of float, optional
        If the coordinates are in physical units: the pixel size (``yx``, ``(y, x)`` or ``(z, y, x)``)
        they are divided by. Default: coordinates are already pixels.

    Returns
    -------
    pandas.DataFrame
        The tracks table of :func:`~viscy_data.importers.finalize_tracks`.

    Raises
    ------
    TrackImportError
        Missing columns, values that are not numbers, and every inconsistency
        :func:`~viscy_data.importers.finalize_tracks` checks; the message names the file and the lines
        (counting the header as line 1).
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tracks table not found: {path}")
    try:
        table = pd.read_csv(path, sep=_separator(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise TrackImportError(f"{path}: cannot be read as a table with a header ({err})") from None
    if columns:
        absent = {ours: theirs for ours, theirs in columns.items() if theirs not in table.columns}
        if absent:
            raise TrackImportError(
                f"{path}: column(s) {sorted(absent.values())} named in columns= are not in the file; "
                f"it has {list(table.columns)}"
            )
        table = table.rename(columns={theirs: ours for ours, theirs in columns.items()})
    missing = [c for c in ("track_id", "t", "y", "x") if c not in table.columns]
    if missing:
        raise TrackImportError(
            f"{path}: missing column(s) {missing}; it has {list(table.columns)}. "
            "Name the file's columns with columns={'t': 'frame', ...} (CLI: --column t=frame)"
        )
    # the header is line 1, so row i is line i + 2
    table[LINE] = np.arange(2, len(table) + 2)
    tracks = finalize_tracks(table, source=path)
    if pixel_size is not None:
        sizes = (float(pixel_size),) if np.isscalar(pixel_size) else tuple(float(v) for v in pixel_size)
        axes = [a for a in ("z", "y", "x") if a in tracks.columns]
        if len(sizes) == 1:
            sizes = sizes * len(axes)
        if len(sizes) != len(axes) or not all(np.isfinite(v) and v > 0 for v in sizes):
            raise ValueError(f"pixel_size needs one positive value or one per axis {axes}, got {pixel_size!r}")
        for axis, size in zip(axes, sizes):
            tracks[axis] = (tracks[axis] / size).round(3)
    return tracks
