"""Planning a rechunk: the settings that decide the destination and the plate's FOVs to copy.

:func:`_plan` checks the arguments of :func:`~viscy_data.rechunk.rechunk` against the source plate
(NGFF version, wells, channels, chunk and shard shapes) before anything is written, and prepares the
destination's plate, row and well metadata. The settings it records are those a resumed run must repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viscy_data.rechunk.metadata import (
    _as_ngff_05,
    _group_json,
    _keep_channels_in_norm,
    _load_attrs,
    _ngff_version,
    _split_ome,
)

#: inner chunk shape (T, C, Z, Y, X); -1 means the full extent of that axis. Chosen with
#: ``benchmarks/bench_rechunk_sweep.py`` (random 2 ch x 8 x 160 x 160 patches from realistic 512 x 512
#: plates): 64 x 64 needed the least CPU per patch (1.8x decoded bytes per delivered byte); 32 x 32 pays
#: per-chunk overhead, 96 and 128 decode more bytes.
DEFAULT_CHUNKS = (1, 1, -1, 64, 64)
#: shard shape (T, C, Z, Y, X): one shard file per (t, c) plane stack
DEFAULT_SHARDS = (1, 1, -1, -1, -1)
#: blosc compressor of the inner chunks (clevel 1, bit-shuffle). In the sweep, lz4 decoded patches in half
#: the CPU time of zstd (iohub's default) at the same size on disk (float32 label-free data barely
#: compresses; photon counts compress as well with either after bit-shuffle).
DEFAULT_COMPRESSOR = "lz4"
_COMPRESSORS = ("zstd", "lz4", "none")

#: version of the settings document (resume state and provenance)
_STATE_FORMAT = 1


@dataclass(frozen=True)
class _Settings:
    """Everything that decides the destination's content; a resumed run must use the same."""

    source: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...]
    compressor: str
    channels: list[str] | None
    wells: list[str] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "source": self.source,
            "chunks": list(self.chunks),
            "shards": list(self.shards),
            "compressor": self.compressor,
            "channels": self.channels,
            "wells": self.wells,
        }


@dataclass(frozen=True)
class _Fov:
    name: str  # "A/1/0"
    path: Path  # source group


@dataclass(frozen=True)
class _Plan:
    settings: _Settings
    plate_attrs: dict[str, Any]  # destination root attributes (NGFF 0.5)
    groups: dict[str, dict[str, Any]]  # row and well groups -> destination attributes
    fovs: list[_Fov]


def _check_shape_arg(name: str, value: Sequence[int] | None, default: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(default if value is None else (int(v) for v in value))
    if len(shape) != 5:
        raise ValueError(f"{name} must have 5 entries (T, C, Z, Y, X), got {list(shape)}")
    if any(v == 0 or v < -1 for v in shape):
        raise ValueError(f"{name} entries must be positive or -1 (full extent), got {list(shape)}")
    return shape


def _plan(
    source: Path,
    chunks: Sequence[int] | None,
    shards: Sequence[int] | None,
    compressor: str,
    channels: Sequence[str] | None,
    wells: Sequence[str] | None,
) -> _Plan:
    if compressor not in _COMPRESSORS:
        raise ValueError(f"compressor must be one of {_COMPRESSORS}, got '{compressor}'")
    settings = _Settings(
        source=str(source.resolve()),
        chunks=_check_shape_arg("chunks", chunks, DEFAULT_CHUNKS),
        shards=_check_shape_arg("shards", shards, DEFAULT_SHARDS),
        compressor=compressor,
        channels=None if channels is None else list(channels),
        wells=None if wells is None else list(wells),
    )
    if not source.exists():
        raise FileNotFoundError(f"source plate not found: {source}")
    root_attrs, _ = _load_attrs(source)
    ome, rest = _split_ome(root_attrs)
    if "plate" not in ome:
        raise ValueError(f"{source} is not an HCS OME-Zarr plate: its root attributes have no 'plate' metadata")
    version = _ngff_version(ome)
    if version not in ("0.4", "0.5"):
        raise ValueError(f"{source}: NGFF version {version} is not supported (0.4 or 0.5)")
    plate = ome["plate"]
    well_paths = [w["path"] for w in plate.get("wells", [])]
    if wells is not None:
        unknown = [w for w in wells if w not in well_paths]
        if unknown:
            raise ValueError(f"well(s) {unknown} not in {source}; available wells: {well_paths}")
        if len(set(wells)) != len(wells):
            raise ValueError(f"wells are listed more than once: {list(wells)}")
        keep = set(wells)
        plate["wells"] = [w for w in plate["wells"] if w["path"] in keep]
        well_paths = [w["path"] for w in plate["wells"]]
    if not well_paths:
        raise ValueError(f"{source} has no wells to copy")

    groups: dict[str, dict[str, Any]] = {}
    fovs: list[_Fov] = []
    for well in well_paths:
        row = well.split("/")[0]
        if row not in groups:
            row_ome, row_rest = _split_ome(_load_attrs(source / row)[0])
            groups[row] = _group_json(_as_ngff_05(row_ome) if row_ome else None, row_rest)
        well_ome, well_rest = _split_ome(_load_attrs(source / well)[0])
        if "well" not in well_ome:
            raise ValueError(f"{source / well} has no NGFF 'well' metadata")
        groups[well] = _group_json(_as_ngff_05(well_ome), well_rest)
        for image in well_ome["well"].get("images", []):
            fov = _Fov(f"{well}/{image['path']}", source / well / image["path"])
            fov_ome, _ = _split_ome(_load_attrs(fov.path)[0])
            names = [ch.get("label") for ch in fov_ome.get("omero", {}).get("channels", [])]
            if channels is not None:
                missing = [c for c in channels if c not in names]
                if missing:
                    raise ValueError(f"channel(s) {missing} not found in FOV '{fov.name}'; available channels: {names}")
            fovs.append(fov)
    if not fovs:
        raise ValueError(f"{source} has no FOVs in the selected wells {well_paths}")
    if channels is not None and len(set(channels)) != len(channels):
        raise ValueError(f"channels are listed more than once: {list(channels)}")
    plate_attrs = _group_json(_as_ngff_05({**ome, "plate": plate}), _keep_channels_in_norm(rest, settings.channels))
    return _Plan(settings, plate_attrs, groups, fovs)
