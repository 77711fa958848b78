"""Read Cell Tracking Challenge results (``res_track.txt`` and label images) into a tracks table.

The CTC format (https://celltrackingchallenge.net) stores one label image per frame (``mask000.tif``,
``mask001.tif``, ... for results; ``man_track000.tif`` ... for ground truth), in which the pixels of a cell
hold its track label, and a text file with one line ``L B E P`` per track: label ``L`` is present from
frame ``B`` to frame ``E`` and its parent track is ``P`` (0 for none). Centroids are computed from the
label images. A track may be absent from some frames between ``B`` and ``E`` (a gap).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data.importers.images import require_tifffile
from viscy_data.importers.tracks import LINE, TrackImportError, finalize_tracks

__all__ = ["find_ctc_label_images", "read_ctc_tracks", "read_res_track"]

#: label image names of results and of ground truth, with the frame number
_LABEL_PATTERNS = (re.compile(r"^mask(\d+)\.tiff?$"), re.compile(r"^man_track(\d+)\.tiff?$"))


def read_res_track(path: str | Path) -> pd.DataFrame:
    """Read a CTC track file (``res_track.txt`` or ``man_track.txt``).

    Parameters
    ----------
    path : str or pathlib.Path
        The text file: one line ``L B E P`` per track (blank lines are skipped).

    Returns
    -------
    pandas.DataFrame
        Columns ``label, begin, end, parent, line`` (``parent`` 0 for none, ``line`` the line number).

    Raises
    ------
    TrackImportError
        A line that is not four non-negative integers, ``E < B``, a label listed twice, a parent that
        is not a listed label, or a parent that does not end before its daughter begins.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CTC track file not found: {path}")
    records = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        fields = text.split()
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 0:
            raise TrackImportError(
                f"{path}, line {number}: expected four non-negative integers 'L B E P', got {text!r}"
            )
        label, begin, end, parent = values
        if label == 0:
            raise TrackImportError(f"{path}, line {number}: label 0 is the background and cannot be a track")
        if end < begin:
            raise TrackImportError(f"{path}, line {number}: track {label} ends (E={end}) before it begins (B={begin})")
        records.append((label, begin, end, parent, number))
    table = pd.DataFrame(records, columns=["label", "begin", "end", "parent", "line"])
    twice = table[table["label"].duplicated(keep=False)]
    if len(twice):
        label = twice["label"].iloc[0]
        lines = twice.loc[twice["label"] == label, "line"].tolist()
        raise TrackImportError(f"{path}, lines {', '.join(map(str, lines))}: track {label} is listed twice")
    ends = dict(zip(table["label"], table["end"]))
    for row in table[table["parent"] > 0].itertuples():
        if row.parent not in ends:
            raise TrackImportError(
                f"{path}, line {row.line}: parent {row.parent} of track {row.label} is not a track of the file"
            )
        if ends[row.parent] >= row.begin:
            raise TrackImportError(
                f"{path}, line {row.line}: track {row.label} begins at frame {row.begin} but its parent "
                f"{row.parent} ends at frame {ends[row.parent]}; a daughter begins after its parent ends"
            )
    return table


def find_ctc_label_images(folder: str | Path) -> dict[int, Path]:
    """Label images of a CTC folder by frame: ``mask<t>.tif`` (results) or ``man_track<t>.tif`` (ground truth).

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder holding the label images.

    Returns
    -------
    dict
        Frame -> path, sorted by frame.

    Raises
    ------
    TrackImportError
        If the folder holds neither kind of label image, or both.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"label image folder not found: {folder}")
    found = [{}, {}]
    for path in folder.iterdir():
        for kind, pattern in enumerate(_LABEL_PATTERNS):
            match = pattern.match(path.name)
            if match:
                found[kind][int(match.group(1))] = path
    if found[0] and found[1]:
        raise TrackImportError(
            f"{folder} holds both result (mask*.tif) and ground-truth (man_track*.tif) label images; "
            "keep one kind per folder"
        )
    frames = found[0] or found[1]
    if not frames:
        raise TrackImportError(f"{folder}: no CTC label images (mask000.tif ... or man_track000.tif ...)")
    return dict(sorted(frames.items()))


def _centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels present in an image and their centroids ``(n, ndim)``, with one pass of bincount per axis."""
    flat = labels.reshape(-1)
    if flat.dtype.kind not in "iu":
        raise TrackImportError(f"label images must hold integers, got {labels.dtype}")
    flat = flat.astype(np.int64, copy=False)
    if flat.size and flat.min() < 0:
        raise TrackImportError("label images must not hold negative labels")
    counts = np.bincount(flat)
    present = np.flatnonzero(counts)
    present = present[present > 0]
    coords = []
    for axis in range(labels.ndim):
        shape = [1] * labels.ndim
        shape[axis] = labels.shape[axis]
        grid = np.broadcast_to(np.arange(labels.shape[axis], dtype=np.float64).reshape(shape), labels.shape)
        sums = np.bincount(flat, weights=grid.reshape(-1), minlength=counts.size)
        coords.append(sums[present] / counts[present])
    return present, np.stack(coords, axis=1) if coords else np.zeros((0, 0))


def read_ctc_tracks(path: str | Path, *, labels_dir: str | Path | None = None) -> pd.DataFrame:
    """Read a CTC ``res_track.txt`` and its label images into a tracks table.

    Parameters
    ----------
    path : str or pathlib.Path
        ``res_track.txt`` (or ``man_track.txt``).
    labels_dir : str or pathlib.Path, optional
        Folder of the label images; default: the folder of ``path``.

    Returns
    -------
    pandas.DataFrame
        The tracks table of :func:`~viscy_data.importers.finalize_tracks`: ``track_id`` is the CTC label,
        ``parent_track_id`` its parent (-1 for 0), ``y, x`` (and ``z`` for 3-D label images) the
        centroid of the label in each frame, ``id`` numbered in time order. A track missing from
        frames between ``B`` and ``E`` has no rows there.

    Raises
    ------
    TrackImportError
        Malformed track file (see :func:`read_res_track`), a label in an image that the track file
        does not list or lists for other frames, a listed track that no image shows, or label images
        of different shapes. The message names the file and the line or frame.
    ImportError
        If tifffile is missing (``pip install 'viscy-data[tiff]'``).
    """
    tifffile = require_tifffile()
    path = Path(path)
    listing = read_res_track(path)
    frames = find_ctc_label_images(Path(labels_dir) if labels_dir is not None else path.parent)
    by_label = listing.set_index("label")
    pieces, shape = [], None
    for t, image_path in frames.items():
        labels = np.asarray(tifffile.imread(image_path))
        if shape is None:
            shape = labels.shape
        elif labels.shape != shape:
            raise TrackImportError(f"{image_path}: shape {labels.shape} differs from the first label image's {shape}")
        present, centres = _centroids(labels)
        unknown = present[~np.isin(present, listing["label"].to_numpy())]
        if unknown.size:
            raise TrackImportError(f"{image_path} (t={t}): label(s) {unknown[:5].tolist()} are not listed in {path}")
        begin = by_label.loc[present, "begin"].to_numpy()
        end = by_label.loc[present, "end"].to_numpy()
        outside = (t < begin) | (t > end)
        if outside.any():
            label = present[outside][0]
            row = by_label.loc[label]
            raise TrackImportError(
                f"{path}, line {row['line']}: track {label} spans frames {row['begin']}-{row['end']} "
                f"but is in {image_path.name} (t={t})"
            )
        piece = {"track_id": present, "t": np.full(present.size, t, dtype=np.int64)}
        for axis, name in enumerate(("z", "y", "x")[-labels.ndim :]):
            piece[name] = centres[:, axis]
        piece[LINE] = by_label.loc[present, "line"].to_numpy()
        pieces.append(pd.DataFrame(piece))
    table = pd.concat(pieces, ignore_index=True)
    never = listing[~listing["label"].isin(table["track_id"])]
    if len(never):
        row = never.iloc[0]
        raise TrackImportError(
            f"{path}, line {row['line']}: track {row['label']} (frames {row['begin']}-{row['end']}) "
            "is in no label image"
        )
    parents = by_label.loc[table["track_id"], "parent"].to_numpy()
    table.insert(2, "parent_track_id", np.where(parents > 0, parents, -1))
    return finalize_tracks(table, source=path)
