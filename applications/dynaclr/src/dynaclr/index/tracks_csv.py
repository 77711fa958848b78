"""Reading one FOV's tracking CSV, shared by the index builder and ``dynaclr check``.

:class:`~dynaclr.index.MultiExperimentIndex` raises on the first error :func:`read_tracks_csv` finds and warns
about dropped rows; :mod:`dynaclr.check` reads every FOV with it and reports everything at once. Keeping both
on one reader means the check accepts exactly what the index accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "REQUIRED_COLUMNS",
    "FovTracks",
    "describe_dropped_rows",
    "first_csv",
    "inside_image",
    "read_tracks_csv",
]

#: columns every tracking CSV must have
REQUIRED_COLUMNS = ("track_id", "t", "y", "x")

#: row numbers listed in one message before "and N more"
_MAX_LISTED = 5


def first_csv(folder: Path) -> Path | None:
    """First CSV of a folder in sorted order (deterministic, unlike a bare glob)."""
    found = sorted(Path(folder).glob("*.csv"))
    return found[0] if found else None


def inside_image(y: np.ndarray, x: np.ndarray, height, width) -> np.ndarray:
    """Whether centroids lie in the image: ``0 <= y < height`` and ``0 <= x < width`` (False for NaN)."""
    return (y >= 0) & (y < height) & (x >= 0) & (x < width)


def _lines(rows: np.ndarray) -> str:
    """CSV line numbers of 0-based data rows (line 1 is the header), the first few of them."""
    lines = [str(int(r) + 2) for r in rows[:_MAX_LISTED]]
    more = f" and {rows.size - _MAX_LISTED} more" if rows.size > _MAX_LISTED else ""
    return f"line{'s' * (rows.size > 1)} {', '.join(lines)}{more}"


@dataclass
class FovTracks:
    """The tracking table of one FOV and what is wrong with it.

    Attributes
    ----------
    csv : pathlib.Path
        The file read.
    table : pandas.DataFrame or None
        The rows, ``track_id`` and ``t`` as int64; None when the file could not be used.
    errors : list[str]
        Why the file cannot be used (each message names the column and CSV line numbers).
    n_nan_coordinates : int
        Rows whose ``y`` or ``x`` is missing or not a number (the index drops them).
    n_outside : int
        Rows whose centroid lies outside the image (the index drops them).
    """

    csv: Path
    table: pd.DataFrame | None = None
    errors: list[str] = field(default_factory=list)
    n_nan_coordinates: int = 0
    n_outside: int = 0

    @property
    def n_dropped(self) -> int:
        """Rows the index leaves out: NaN coordinates or outside the image."""
        return self.n_nan_coordinates + self.n_outside


def _integer_column(df: pd.DataFrame, column: str, errors: list[str]) -> np.ndarray | None:
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    not_number = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy())
    missing = np.flatnonzero(raw.isna().to_numpy())
    finite = np.isfinite(values)
    fractional = np.flatnonzero(finite & (values != np.round(values)))
    infinite = np.flatnonzero(np.isinf(values))
    found = False
    if missing.size:
        errors.append(f"column '{column}' is empty or NaN on {_lines(missing)}")
        found = True
    if not_number.size:
        example = raw.iloc[not_number[0]]
        errors.append(f"column '{column}' holds non-numbers (e.g. {example!r}) on {_lines(not_number)}")
        found = True
    if fractional.size or infinite.size:
        bad = np.union1d(fractional, infinite)
        errors.append(f"column '{column}' must hold integers, got {values[bad[0]]:g} on {_lines(bad)}")
        found = True
    return None if found else values.astype(np.int64)


def read_tracks_csv(csv: str | Path, image_shape: tuple[int, int, int] | None = None) -> FovTracks:
    """Read one FOV's tracking CSV and find what would break or silently shrink the index.

    Parameters
    ----------
    csv : str or Path
        The tracking CSV (``track_id, t, y, x`` and any other columns).
    image_shape : tuple[int, int, int], optional
        ``(T, height, width)`` of the FOV's image: timepoints must be in ``0..T-1`` and centroids inside.

    Returns
    -------
    FovTracks
        With ``errors`` for an unreadable or empty file, missing columns, ``track_id``/``t`` that are missing,
        not numbers or not integers, and ``t`` outside the image's timepoints; counts of rows with NaN or
        out-of-image coordinates.
    """
    result = FovTracks(Path(csv))
    try:
        df = pd.read_csv(csv)
    except pd.errors.EmptyDataError:
        result.errors.append("the file is empty (no header line): write the tracker's table or remove the file")
        return result
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        result.errors.append(f"cannot read the file as CSV ({type(err).__name__}: {err})")
        return result
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        result.errors.append(f"missing tracking columns {missing} (has {list(df.columns)})")
        return result
    ids = {c: _integer_column(df, c, result.errors) for c in ("track_id", "t")}
    y = pd.to_numeric(df["y"], errors="coerce").to_numpy(dtype=np.float64)
    x = pd.to_numeric(df["x"], errors="coerce").to_numpy(dtype=np.float64)
    nan = ~(np.isfinite(y) & np.isfinite(x))
    result.n_nan_coordinates = int(nan.sum())
    if image_shape is not None:
        n_t, height, width = image_shape
        if ids["t"] is not None:
            beyond = np.flatnonzero((ids["t"] < 0) | (ids["t"] >= n_t))
            if beyond.size:
                result.errors.append(
                    f"t = {ids['t'][beyond[0]]} on {_lines(beyond)} is outside the image's timepoints 0..{n_t - 1}"
                )
        result.n_outside = int((~nan & ~inside_image(y, x, height, width)).sum())
    if result.errors:
        return result
    df["track_id"], df["t"] = ids["track_id"], ids["t"]
    result.table = df
    return result


def describe_dropped_rows(dropped: dict) -> str:
    """One sentence counting the tracking rows left out, per FOV.

    Parameters
    ----------
    dropped : dict[str, FovTracks]
        FOV name -> its tracks (with ``n_nan_coordinates`` and ``n_outside``).

    Returns
    -------
    str
        Totals, then the counts of the first ten FOVs.
    """
    total_nan = sum(t.n_nan_coordinates for t in dropped.values())
    total_out = sum(t.n_outside for t in dropped.values())
    per_fov = ", ".join(
        f"{fov} ({t.n_nan_coordinates} NaN, {t.n_outside} outside)" for fov, t in sorted(dropped.items())[:10]
    )
    more = f" and {len(dropped) - 10} more FOVs" if len(dropped) > 10 else ""
    return (
        f"{total_nan + total_out} tracking rows left out ({total_nan} with NaN y/x, {total_out} with the centroid "
        f"outside the image): {per_fov}{more}"
    )
