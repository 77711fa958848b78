"""Read TrackMate XML files (``File > Save`` in Fiji's TrackMate) into a tracks table.

A TrackMate track is a graph of spots linked by edges; a spot with several links to later frames is
a division (a *split*). The reader cuts every track into cells: a new ``track_id`` starts at the first
spot of the track and at each daughter of a split, whose ``parent_track_id`` is the mother's
``track_id``. Gap-closing links (across missing frames) stay within one track. Merges (a spot with
several links from earlier frames) have no place in a lineage tree and are an error.
"""

from __future__ import annotations

import logging
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data.importers.tracks import LINE, TrackImportError, finalize_tracks

__all__ = ["TrackMateImage", "read_trackmate_image", "read_trackmate_xml"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackMateImage:
    """The image a TrackMate file was made on (its ``<ImageData>`` element).

    Attributes
    ----------
    filename : str
        Image file name.
    shape : tuple of int
        ``(T, Z, Y, X)``: frames, slices, height, width.
    pixel_size : tuple of float
        ``(z, y, x)`` size of a voxel in the file's spatial units.
    spatial_units : str
        Unit of the spot positions (e.g. ``"micron"``, ``"pixel"``).
    """

    filename: str
    shape: tuple[int, int, int, int]
    pixel_size: tuple[float, float, float]
    spatial_units: str


@dataclass
class _Model:
    """What the parser collects: spots, tracks, edges, kept track ids and the image calibration."""

    spots: dict[int, tuple[int, float, float, float, int, tuple]] = field(default_factory=dict)
    tracks: dict[int, tuple[str, int]] = field(default_factory=dict)  # TRACK_ID -> (name, line)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)  # (track, source, target, line)
    filtered: list[int] | None = None
    image: dict[str, str] = field(default_factory=dict)
    spatial_units: str = ""
    feature_names: tuple[str, ...] = ()
    first_spot_attributes: tuple[str, ...] = ()


def _parse(path: Path, features: Sequence[str]) -> _Model:
    model = _Model(feature_names=tuple(features))
    parser = xml.parsers.expat.ParserCreate()
    parser.buffer_text = True
    state = {"track": None, "in_filtered": False}

    def number(attrs: dict, key: str, what: str, cast=float):
        value = attrs.get(key)
        if value is None:
            raise TrackImportError(f"{path}, line {parser.CurrentLineNumber}: {what} has no {key} attribute")
        try:
            return cast(float(value)) if cast is int else cast(value)
        except ValueError:
            raise TrackImportError(
                f"{path}, line {parser.CurrentLineNumber}: {what} has {key}={value!r}, not a number"
            ) from None

    def start(name: str, attrs: dict) -> None:
        line = parser.CurrentLineNumber
        if name == "Spot":
            spot_id = number(attrs, "ID", "a Spot", int)
            what = f"Spot ID={spot_id}"
            if spot_id in model.spots:
                raise TrackImportError(f"{path}, line {line}: Spot ID={spot_id} is defined twice")
            values = tuple(float(attrs[f]) if f in attrs else np.nan for f in model.feature_names)
            if not model.first_spot_attributes:
                model.first_spot_attributes = tuple(attrs)
            model.spots[spot_id] = (
                number(attrs, "FRAME", what, int),
                number(attrs, "POSITION_X", what),
                number(attrs, "POSITION_Y", what),
                float(attrs.get("POSITION_Z", 0.0)),
                line,
                values,
            )
        elif name == "Edge" and state["track"] is not None:
            what = f"an Edge of track {state['track']}"
            model.edges.append(
                (
                    state["track"],
                    number(attrs, "SPOT_SOURCE_ID", what, int),
                    number(attrs, "SPOT_TARGET_ID", what, int),
                    line,
                )
            )
        elif name == "Track":
            track_id = number(attrs, "TRACK_ID", "a Track", int)
            model.tracks[track_id] = (attrs.get("name", f"Track_{track_id}"), line)
            state["track"] = track_id
        elif name == "FilteredTracks":
            state["in_filtered"] = True
            model.filtered = []
        elif name == "TrackID" and state["in_filtered"]:
            model.filtered.append(number(attrs, "TRACK_ID", "a TrackID", int))
        elif name == "ImageData":
            model.image = dict(attrs)
        elif name == "Model":
            model.spatial_units = attrs.get("spatialunits", "")

    def end(name: str) -> None:
        if name == "Track":
            state["track"] = None
        elif name == "FilteredTracks":
            state["in_filtered"] = False

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        with open(path, "rb") as stream:
            parser.ParseFile(stream)
    except xml.parsers.expat.ExpatError as err:
        raise TrackImportError(f"{path}, line {err.lineno}: not a well-formed XML file ({err})") from None
    return model


def _image(model: _Model, path: Path) -> TrackMateImage:
    attrs = model.image

    def get(key: str, default: float) -> float:
        try:
            return float(attrs.get(key, default))
        except ValueError:
            raise TrackImportError(f"{path}: <ImageData> has {key}={attrs[key]!r}, not a number") from None

    return TrackMateImage(
        filename=attrs.get("filename", ""),
        shape=(int(get("nframes", 0)), int(get("nslices", 1)), int(get("height", 0)), int(get("width", 0))),
        pixel_size=(get("voxeldepth", 1.0), get("pixelheight", 1.0), get("pixelwidth", 1.0)),
        spatial_units=model.spatial_units,
    )


def read_trackmate_image(path: str | Path) -> TrackMateImage:
    """Read the image calibration of a TrackMate XML file (size, pixel size, units).

    Parameters
    ----------
    path : str or pathlib.Path
        TrackMate XML file.

    Returns
    -------
    TrackMateImage
        Shape and calibration of the image the tracks were made on.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TrackMate file not found: {path}")
    return _image(_parse(path, ()), path)


def _pixel_size(pixel_size: float | Sequence[float] | None, image: TrackMateImage) -> tuple[float, float, float]:
    """(z, y, x) sizes that turn the XML's positions into pixels of the target image."""
    if pixel_size is None:
        return image.pixel_size
    sizes = (float(pixel_size),) if np.isscalar(pixel_size) else tuple(float(v) for v in pixel_size)
    if len(sizes) == 1:
        sizes = (image.pixel_size[0], sizes[0], sizes[0])
    elif len(sizes) == 2:
        sizes = (image.pixel_size[0], *sizes)
    elif len(sizes) != 3:
        raise ValueError(f"pixel_size takes 1 (yx), 2 (y, x) or 3 (z, y, x) values, got {pixel_size!r}")
    if not all(np.isfinite(v) and v > 0 for v in sizes):
        raise ValueError(f"pixel sizes must be positive, got {sizes}")
    return sizes


def read_trackmate_xml(
    path: str | Path,
    *,
    pixel_size: float | Sequence[float] | None = None,
    spot_features: Sequence[str] = (),
    filtered_only: bool = True,
) -> pd.DataFrame:
    """Read a TrackMate XML file into a tracks table (one row per tracked spot).

    Parameters
    ----------
    path : str or pathlib.Path
        TrackMate XML file (``File > Save`` in TrackMate, or a file written by its scripting API).
    pixel_size : float or sequence of float, optional
        Pixel size of the image the tracks will be used with, in the spatial units of the file
        (``yx``, ``(y, x)`` or ``(z, y, x)``): spot positions are divided by it to give pixels. Default:
        the calibration in the file's ``<ImageData>``, right when the image is the one TrackMate
        tracked. Give it when the image was rescaled since (e.g. tracked at 0.068 um/px, imported
        downscaled 8x: ``pixel_size=0.544``).
    spot_features : sequence of str, default ()
        Spot features to copy into columns of the same name (e.g. ``"MEAN_INTENSITY_CH1"``); NaN for
        spots that lack them.
    filtered_only : bool, default True
        Read only the tracks TrackMate kept after track filtering (``<FilteredTracks>``), as its
        exports do; False reads every track.

    Returns
    -------
    pandas.DataFrame
        The tracks table of :func:`~viscy_data.importers.finalize_tracks` (``track_id, t, y, x, id,
        parent_track_id, parent_id``, ``z`` for volumes) plus ``trackmate_track_id`` (the TrackMate
        ``TRACK_ID`` of the whole lineage) and the requested spot features. ``id`` is the TrackMate
        spot ``ID`` and ``t`` its ``FRAME``. Spots in no track are left out.

    Raises
    ------
    TrackImportError
        Malformed XML; a spot without ``FRAME``/``POSITION_X``/``POSITION_Y``; an edge to a spot that
        does not exist or between two spots of one frame; a merge (a spot linked from two spots of
        earlier frames); a requested feature no spot has. The message names the file, the line and
        the track.
    FileNotFoundError
        If the file does not exist.

    Examples
    --------
    >>> tracks = read_trackmate_xml("merged_linked.ome.xml", pixel_size=0.544)  # doctest: +SKIP
    >>> write_tracks_csv(tracks, "plate.zarr", "A/1/0")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TrackMate file not found: {path}")
    model = _parse(path, spot_features)
    if not model.tracks and not model.spots:
        raise TrackImportError(f"{path}: no <Spot> or <Track> elements; is this a TrackMate XML file?")
    for position, feature in enumerate(model.feature_names):
        if model.spots and all(np.isnan(v[5][position]) for v in model.spots.values()):
            available = sorted(a for a in model.first_spot_attributes if a not in ("ID", "name"))
            raise TrackImportError(f"{path}: no spot has the feature {feature!r}; spots have {available}")
    image = _image(model, path)
    size_z, size_y, size_x = _pixel_size(pixel_size, image)

    kept = set(model.tracks) if model.filtered is None or not filtered_only else set(model.filtered)
    unknown = kept - set(model.tracks)
    if unknown:
        raise TrackImportError(f"{path}: <FilteredTracks> names TRACK_ID(s) {sorted(unknown)} that have no <Track>")
    segments = _segments(model, kept, path)

    spot_ids = np.fromiter(segments, dtype=np.int64, count=len(segments))
    rows = [model.spots[s] for s in spot_ids]
    table = pd.DataFrame(
        {
            "track_id": np.array([segments[s][0] for s in spot_ids], dtype=np.int64),
            "t": np.array([r[0] for r in rows], dtype=np.int64),
            "y": np.array([r[2] for r in rows], dtype=np.float64) / size_y,
            "x": np.array([r[1] for r in rows], dtype=np.float64) / size_x,
            "id": spot_ids,
            "parent_track_id": np.array([segments[s][1] for s in spot_ids], dtype=np.int64),
            "trackmate_track_id": np.array([segments[s][2] for s in spot_ids], dtype=np.int64),
            LINE: np.array([r[4] for r in rows], dtype=np.int64),
        }
    )
    if image.shape[1] > 1 or any(r[3] != 0 for r in rows):
        table.insert(2, "z", np.array([r[3] for r in rows], dtype=np.float64) / size_z)
    for position, feature in enumerate(model.feature_names):
        table[feature] = np.array([r[5][position] for r in rows], dtype=np.float64)
    untracked = len(model.spots) - len(segments)
    if untracked:
        _logger.info("%s: %d of %d spots are in no (kept) track and were left out", path, untracked, len(model.spots))
    return finalize_tracks(table, source=path)


def _segments(model: _Model, kept: set[int], path: Path) -> dict[int, tuple[int, int, int]]:
    """Cut each kept TrackMate track into cells: spot id -> (track_id, parent_track_id, TRACK_ID)."""
    children: dict[int, list[int]] = {}
    parent_of: dict[int, tuple[int, int]] = {}  # spot -> (parent spot, edge line)
    track_of: dict[int, int] = {}
    for track, source, target, line in model.edges:
        if track not in kept:
            continue
        name = model.tracks[track][0]
        for spot in (source, target):
            if spot not in model.spots:
                raise TrackImportError(
                    f"{path}, line {line}: an edge of track '{name}' (TRACK_ID={track}) links spot {spot}, "
                    "which is not among the file's spots"
                )
        t_source, t_target = model.spots[source][0], model.spots[target][0]
        if t_source == t_target:
            raise TrackImportError(
                f"{path}, line {line}: an edge of track '{name}' (TRACK_ID={track}) links spots {source} and "
                f"{target}, both in frame {t_source}"
            )
        if t_source > t_target:  # TrackMate edges are not always stored forward in time
            source, target = target, source
        if target in parent_of:
            other, other_line = parent_of[target]
            raise TrackImportError(
                f"{path}, lines {other_line} and {line}: spot {target} of track '{name}' (TRACK_ID={track}) is "
                f"linked from two earlier spots ({other} and {source}), a merge; lineage trees cannot hold "
                "merges, so track without merging (TrackMate: 'allow track merging' off) or remove the link"
            )
        parent_of[target] = (source, line)
        children.setdefault(source, []).append(target)
        track_of[source] = track_of[target] = track

    roots = sorted(
        (spot for spot in track_of if spot not in parent_of),
        key=lambda s: (model.spots[s][0], track_of[s], s),
    )
    # depth-first over each tree; a new cell starts at every root and at every daughter of a split
    assigned: dict[int, tuple[int, int, int]] = {}
    stack = [(root, -1, track_of[root]) for root in reversed(roots)]
    next_id = 1
    while stack:
        spot, mother, track = stack.pop()
        cell = next_id
        next_id += 1
        while True:
            assigned[spot] = (cell, mother, track)
            following = sorted(children.get(spot, ()), key=lambda s: (model.spots[s][0], s))
            if len(following) == 1:
                spot = following[0]
                continue
            stack.extend((daughter, cell, track) for daughter in reversed(following))
            break
    return assigned
