"""Rechunk an HCS OME-Zarr plate into an "AI-ready" NGFF 0.5 / zarr v3 plate with sharding.

Training reads small patches (e.g. 2 channels x Z 8 x 160 x 160). Plates written with iohub's default
layout store one compressed chunk per (t, c) plane stack, so every patch decodes the whole stack: 10x the
bytes it uses at 512 x 512, 160x at 2048 x 2048. :func:`rechunk` rewrites a plate so that each (t, c)
plane stack is one *shard* file holding small independently compressed *inner chunks*: a reader that
understands sharding (tensorstore's ``zarr3`` driver) then decodes only the inner chunks a patch
overlaps, while the file count stays that of the original plate.

The copy keeps every piece of metadata (plate, well and FOV attributes including channel names,
coordinate transformations and normalisation statistics; array attributes), converts NGFF 0.4 metadata
to 0.5, can keep only some channels or wells (normalisation statistics are restricted to the kept
channels), verifies every FOV against pixel checksums and can be resumed: each FOV is written to a
staging folder, verified, then moved into place in one rename and recorded as done (bookkeeping lives
beside the destination, in ``.<name>.rechunk``, until the end); the plate's root metadata is written
last, with the source, settings and per-FOV checksums under the ``"rechunk"`` attribute, so an
interrupted destination never opens as a complete plate. Running the same command again finishes the
remaining FOVs.

Command line: ``viscy rechunk SOURCE DEST`` (also ``dynaclr rechunk`` and
``python -m viscy_data.rechunk``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from viscy_data.patch_reader import array_spec, require_tensorstore, tensorstore_context

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_COMPRESSOR",
    "DEFAULT_SHARDS",
    "PROVENANCE_KEY",
    "RechunkResult",
    "build_parser",
    "main",
    "rechunk",
]

_logger = logging.getLogger(__name__)

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

#: NGFF metadata keys that move under ``"ome"`` in NGFF 0.5
_OME_KEYS = ("plate", "well", "multiscales", "omero", "labels", "image-label", "bioformats2raw.layout")
#: root attribute of a rechunked plate recording its source, settings and per-FOV pixel checksums
PROVENANCE_KEY = "rechunk"
_STATE_FORMAT = 1
#: bytes of pixels in flight per worker thread (each worker holds one shard; see ``_workers``)
_MEMORY_BUDGET = 512 * 1024**2


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RechunkResult:
    """Outcome of :func:`rechunk`.

    Attributes
    ----------
    destination : pathlib.Path
        The rechunked plate.
    fovs : list of str
        Every FOV of the destination (``"A/1/0"``), in plate order.
    written : list of str
        FOVs written (and verified) by this call.
    skipped : list of str
        FOVs already complete from an earlier, interrupted call.
    checksums : dict of str to str
        FOV -> BLAKE2b digest of its pixels (every array, shard by shard), equal in source and copy.
    bytes_written : int
        Uncompressed pixel bytes copied by this call.
    seconds : float
        Wall time of this call.
    """

    destination: Path
    fovs: list[str]
    written: list[str]
    skipped: list[str]
    checksums: dict[str, str] = field(repr=False)
    bytes_written: int
    seconds: float


# ---------------------------------------------------------------------------------------------- metadata


def _load_attrs(group_path: Path) -> tuple[dict[str, Any], int]:
    """Attributes and zarr format (2 or 3) of the group stored at ``group_path``."""
    if (group_path / "zarr.json").exists():
        meta = json.loads((group_path / "zarr.json").read_text())
        if meta.get("node_type") != "group":
            raise ValueError(f"{group_path} is a zarr {meta.get('node_type')}, not a group")
        return dict(meta.get("attributes", {})), 3
    if (group_path / ".zgroup").exists():
        attrs_file = group_path / ".zattrs"
        return (json.loads(attrs_file.read_text()) if attrs_file.exists() else {}), 2
    raise FileNotFoundError(f"no zarr group at {group_path} (neither zarr.json nor .zgroup)")


def _split_ome(attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a group's attributes into (NGFF metadata, other attributes), for NGFF 0.4 or 0.5."""
    attrs = copy.deepcopy(attrs)
    if "ome" in attrs:
        ome = attrs.pop("ome")
        return ome, attrs
    ome = {key: attrs.pop(key) for key in _OME_KEYS if key in attrs}
    attrs.pop("version", None)  # iohub's top-level NGFF 0.4 version marker
    return ome, attrs


def _ngff_version(ome: dict[str, Any]) -> str | None:
    """Return the NGFF version a group declares (0.5: ``ome.version``; 0.4: inside plate/well/multiscales)."""
    if "version" in ome:
        return str(ome["version"])
    for key in ("plate", "well", "omero", "image-label"):
        if isinstance(ome.get(key), dict) and "version" in ome[key]:
            return str(ome[key]["version"])
    for scale in ome.get("multiscales", []):
        if "version" in scale:
            return str(scale["version"])
    return None


def _as_ngff_05(ome: dict[str, Any]) -> dict[str, Any]:
    """NGFF metadata rewritten for 0.5: ``version`` at the top, nested version markers updated."""
    ome = copy.deepcopy(ome)
    for key in ("plate", "well", "omero", "image-label"):
        if isinstance(ome.get(key), dict) and "version" in ome[key]:
            ome[key]["version"] = "0.5"
    for scale in ome.get("multiscales", []):
        if "version" in scale:
            scale["version"] = "0.5"
    ome["version"] = "0.5"
    return ome


def _keep_channels_in_norm(attrs: dict[str, Any], channels: list[str] | None) -> dict[str, Any]:
    """Restrict normalisation statistics (keyed by channel name) to the kept channels."""
    from viscy_data.norm_meta import NORM_META_KEY

    if channels is None or not isinstance(attrs.get(NORM_META_KEY), dict):
        return attrs
    attrs[NORM_META_KEY] = {name: v for name, v in attrs[NORM_META_KEY].items() if name in channels}
    return attrs


def _group_json(ome: dict[str, Any] | None, attrs: dict[str, Any]) -> dict[str, Any]:
    attributes = ({"ome": ome} if ome else {}) | attrs
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    """Write JSON so that ``path`` holds either the old or the complete new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)


def _fill_value_json(value: Any, dtype: np.dtype) -> Any:
    if value is None:
        return False if dtype == np.bool_ else 0
    value = np.asarray(value, dtype=dtype).item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, complex):
        return [_fill_value_json(value.real, np.float64), _fill_value_json(value.imag, np.float64)]
    return value


# ---------------------------------------------------------------------------------------------- plan


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


# ---------------------------------------------------------------------------------------------- arrays


def _array_paths(group: Path) -> Iterator[tuple[str, Path]]:
    """Every array below ``group`` (relative key, path), sub-groups (e.g. labels) included."""
    for child in sorted(group.iterdir()):
        if not child.is_dir():
            continue
        if (child / ".zarray").exists() or (
            (child / "zarr.json").exists() and json.loads((child / "zarr.json").read_text())["node_type"] == "array"
        ):
            yield child.name, child
        elif (child / ".zgroup").exists() or (child / "zarr.json").exists():
            for key, path in _array_paths(child):
                yield f"{child.name}/{key}", path


def _resolve(spec: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk or shard shape for an array: -1 -> full extent, clipped to the array (at least 1)."""
    return tuple(max(1, n if s == -1 else min(s, n)) for s, n in zip(spec, shape))


@dataclass(frozen=True)
class _ArrayJob:
    key: str  # "0", "1", "labels/cells/0"
    source: Path
    dest: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int | None
    channel_ids: list[int] | None  # source channels kept along channel_axis
    shard: tuple[int, ...]
    metadata: dict[str, Any]  # zarr v3 metadata of the destination array

    def units(self) -> list[tuple[slice, ...]]:
        """Destination regions of one shard each, in C order."""
        ranges = [range(0, n, s) for n, s in zip(self.shape, self.shard)]
        return [
            tuple(slice(o, min(o + s, n)) for o, s, n in zip(origin, self.shard, self.shape))
            for origin in product(*ranges)
        ]

    def source_region(self, region: tuple[slice, ...]) -> tuple[Any, ...]:
        if self.channel_axis is None or self.channel_ids is None:
            return region
        c = region[self.channel_axis]
        out = list(region)
        out[self.channel_axis] = self.channel_ids[c.start : c.stop]
        return tuple(out)


def _codecs(compressor: str, dtype: np.dtype, inner: tuple[int, ...]) -> list[dict[str, Any]]:
    chunk_codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compressor != "none":
        chunk_codecs.append(
            {
                "name": "blosc",
                "configuration": {
                    "cname": compressor,
                    "clevel": 1,
                    "shuffle": "bitshuffle",
                    "typesize": dtype.itemsize,
                    "blocksize": 0,
                },
            }
        )
    if dtype.itemsize == 1:
        chunk_codecs[0] = {"name": "bytes"}
    return [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": list(inner),
                "codecs": chunk_codecs,
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                "index_location": "end",
            },
        }
    ]


def _source_array_meta(path: Path) -> tuple[tuple[int, ...], np.dtype, Any, dict[str, Any], list[str] | None]:
    """(shape, dtype, fill value, attributes, dimension names) of a zarr v2 or v3 array."""
    import zarr

    array = zarr.open_array(str(path), mode="r")
    names = getattr(array.metadata, "dimension_names", None)
    return tuple(array.shape), np.dtype(array.dtype), array.fill_value, dict(array.attrs), names


def _array_jobs(fov: _Fov, dest: Path, settings: _Settings) -> list[_ArrayJob]:
    """One job per array of the FOV; channels are selected in arrays of the FOV's image (omero) group."""
    jobs = []
    groups_axes: dict[str, tuple[list[dict], bool]] = {}
    for key, path in _array_paths(fov.path):
        parent = key.rpartition("/")[0]
        if parent not in groups_axes:
            ome, _ = _split_ome(_load_attrs(fov.path / parent if parent else fov.path)[0])
            scales = ome.get("multiscales") or [{}]
            groups_axes[parent] = (scales[0].get("axes", []), "omero" in ome)
        axes, is_image = groups_axes[parent]
        shape, dtype, fill, attrs, dim_names = _source_array_meta(path)
        if dtype.fields is not None or dtype.kind in "OSUVM":
            raise ValueError(f"{path}: arrays of dtype {dtype} cannot be rechunked")
        axis_names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
        axis_types = [a.get("type") if isinstance(a, dict) else None for a in axes]
        if len(axis_names) != len(shape):
            axis_names = list(dim_names) if dim_names and len(dim_names) == len(shape) else None
            axis_types = [None] * len(shape)
        # chunk/shard shapes are given for (T, C, Z, Y, X); arrays with fewer axes (e.g. TZYX labels)
        # take the entries of their own axes by name, or the trailing entries without names
        if axis_names and set(axis_names) <= set("TCZYX") and len(shape) <= 5:
            pick = ["TCZYX".index(n) for n in axis_names]
        else:
            pick = list(range(5 - len(shape), 5)) if len(shape) <= 5 else None
        if pick is None:
            raise ValueError(f"{path}: {len(shape)}-dimensional arrays are not supported (at most T, C, Z, Y, X)")
        channel_axis = axis_types.index("channel") if is_image and "channel" in axis_types else None
        channel_ids = None
        if channel_axis is not None and settings.channels is not None:
            ome, _ = _split_ome(_load_attrs(fov.path / parent if parent else fov.path)[0])
            names = [ch.get("label") for ch in ome["omero"]["channels"]]
            channel_ids = [i for i, name in enumerate(names) if name in settings.channels]
            shape = tuple(len(channel_ids) if i == channel_axis else n for i, n in enumerate(shape))
        inner = _resolve(tuple(settings.chunks[i] for i in pick), shape)
        # a shard holds whole inner chunks
        shard_spec = _resolve(tuple(settings.shards[i] for i in pick), shape)
        shard = tuple(math.ceil(s / c) * c for s, c in zip(shard_spec, inner))
        metadata = {
            "shape": list(shape),
            "data_type": dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shard)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": _fill_value_json(fill, dtype),
            "codecs": _codecs(settings.compressor, dtype, inner),
            "attributes": attrs,
        }
        if axis_names:
            metadata["dimension_names"] = axis_names
        jobs.append(_ArrayJob(key, path, dest / key, shape, dtype, channel_axis, channel_ids, shard, metadata))
    if not jobs:
        raise ValueError(f"FOV '{fov.name}' ({fov.path}) holds no arrays")
    return jobs


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).digest()


def _workers(unit_bytes: int) -> int:
    """Shards in flight: enough to keep every core busy, few enough to bound memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores + 1, _MEMORY_BUDGET // max(unit_bytes, 1)))


def _copy_fov(ts, fov: _Fov, jobs: list[_ArrayJob], staging: Path, settings: _Settings, progress) -> tuple[str, int]:
    """Write one FOV's arrays (``jobs``) and groups into ``staging`` and verify them; returns (digest, bytes)."""
    group_ome, group_rest = _split_ome(_load_attrs(fov.path)[0])
    if settings.channels is not None and "omero" in group_ome:
        group_ome["omero"]["channels"] = [
            ch for ch in group_ome["omero"]["channels"] if ch.get("label") in settings.channels
        ]
    group_rest = _keep_channels_in_norm(group_rest, settings.channels)
    _write_json_atomic(staging / "zarr.json", _group_json(_as_ngff_05(group_ome), group_rest))
    for sub in {job.key.rpartition("/")[0] for job in jobs} - {""}:  # e.g. labels/ and labels/cells/
        parts = sub.split("/")
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            ome, rest = _split_ome(_load_attrs(fov.path / rel)[0])
            _write_json_atomic(staging / rel / "zarr.json", _group_json(_as_ngff_05(ome) if ome else None, rest))

    fov_hash = hashlib.blake2b(digest_size=16)
    total = 0
    for job in jobs:
        context = tensorstore_context(cache_pool_bytes=0)
        source = ts.open(array_spec(job.source), read=True, context=context).result()
        dest = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(job.dest)}, "metadata": job.metadata},
            create=True,
            context=context,
        ).result()
        units = job.units()
        unit_bytes = math.prod(job.shard) * job.dtype.itemsize

        def copy_unit(region, source=source, dest=dest, job=job):
            data = source[job.source_region(region)].read().result()
            digest = _digest(data)
            # the array is not touched again: tensorstore may encode from it instead of copying it first
            dest[region].write(data, can_reference_source_data_indefinitely=True).result()
            progress.update(data.nbytes)
            return digest, data.nbytes

        with ThreadPoolExecutor(_workers(unit_bytes)) as pool:
            written = list(pool.map(copy_unit, units))
        # verify: reopen from disk (metadata included) and compare every shard's pixels
        check = ts.open(array_spec(job.dest), read=True, context=context).result()
        if tuple(check.shape) != job.shape or np.dtype(check.dtype.numpy_dtype) != job.dtype:
            raise RuntimeError(f"rechunk of {fov.name}/{job.key}: written array has the wrong shape or dtype")

        def read_back(region, check=check):
            return _digest(check[region].read().result())

        with ThreadPoolExecutor(_workers(unit_bytes)) as pool:
            for region, (expected, _), got in zip(units, written, pool.map(read_back, units)):
                if got != expected:
                    raise RuntimeError(
                        f"rechunk verification failed for FOV '{fov.name}', array '{job.key}', region "
                        f"{[(s.start, s.stop) for s in region]}: the copy differs from the source"
                    )
        fov_hash.update(job.key.encode())
        for digest, nbytes in written:
            fov_hash.update(digest)
            total += nbytes
    return fov_hash.hexdigest(), total


# ---------------------------------------------------------------------------------------------- driver


def _state_dir(dest: Path) -> Path:
    """Bookkeeping of an unfinished rechunk, beside the destination (zarr warns about foreign folders inside)."""
    return dest.parent / f".{dest.name}.rechunk"


def _settings_mismatch(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    return "; ".join(f"{k}: was {found.get(k)!r}, now {v!r}" for k, v in wanted.items() if found.get(k) != v)


def _prepare_destination(dest: Path, settings: _Settings) -> dict[str, str] | None:
    """Start, resume or recognise a finished rechunk into ``dest``.

    Returns
    -------
    dict or None
        The per-FOV checksums when ``dest`` is already a finished rechunk with these settings; ``None``
        when FOVs remain to be written (the state folder then exists, with these settings).
    """
    state = _state_dir(dest)
    wanted = settings.as_json()
    settings_file = state / "settings.json"
    if settings_file.exists():
        detail = _settings_mismatch(json.loads(settings_file.read_text()), wanted)
        if detail:
            raise ValueError(
                f"{dest} is an unfinished rechunk with other settings ({detail}); re-run with the same settings "
                f"to finish it, or remove {dest} and {state} to start over"
            )
        dest.mkdir(exist_ok=True)
        return None
    if dest.exists():
        root = dest / "zarr.json"
        provenance = json.loads(root.read_text()).get("attributes", {}).get(PROVENANCE_KEY) if root.exists() else None
        if not isinstance(provenance, dict):
            raise FileExistsError(
                f"destination {dest} exists and is not a rechunk destination; choose a new path or remove it"
            )
        detail = _settings_mismatch(provenance, wanted)
        if detail:
            raise ValueError(f"{dest} is a finished rechunk with other settings ({detail}); choose a new destination")
        return dict(provenance.get("checksums", {}))
    if not dest.parent.exists():
        raise FileNotFoundError(f"parent folder of the destination does not exist: {dest.parent}")
    # the state folder appears complete with its settings in one rename: it never exists without them
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _write_json_atomic(tmp / "settings.json", wanted)
    os.replace(tmp, state)
    dest.mkdir()
    return None


def rechunk(
    source: str | Path,
    destination: str | Path,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    channels: Sequence[str] | None = None,
    wells: Sequence[str] | None = None,
    compressor: str = DEFAULT_COMPRESSOR,
    progress: bool = True,
) -> RechunkResult:
    """Copy an HCS OME-Zarr plate into a sharded NGFF 0.5 / zarr v3 plate laid out for patch reads.

    Parameters
    ----------
    source : str or pathlib.Path
        HCS OME-Zarr plate, NGFF 0.4 (zarr v2) or 0.5 (zarr v3), sharded or not.
    destination : str or pathlib.Path
        New plate to write. If it exists it must be an unfinished rechunk (with the same settings),
        which is then finished; a finished one is left as is.
    chunks : sequence of 5 int, optional
        Inner chunk shape (T, C, Z, Y, X), the unit a reader decodes; -1 is the full axis.
        Default :data:`DEFAULT_CHUNKS`.
    shards : sequence of 5 int, optional
        Shard shape (T, C, Z, Y, X), the unit stored as one file; rounded up to whole inner chunks;
        -1 is the full axis. Default :data:`DEFAULT_SHARDS` (one shard per (t, c) plane stack).
    channels : sequence of str, optional
        Channels to keep (in source order); all when ``None``. Normalisation statistics and the
        ``omero`` channel list are restricted to them.
    wells : sequence of str, optional
        Wells (``"A/1"``) to keep; all when ``None``.
    compressor : {"zstd", "lz4", "none"}
        Blosc compressor of the inner chunks (clevel 1, bit-shuffle), or no compression; lz4 (the
        default) decodes about twice as fast as zstd at about the same size on microscopy data.
    progress : bool
        Show a progress bar (bytes copied) on stderr.

    Returns
    -------
    RechunkResult
        FOVs written or already complete, their checksums, bytes copied and time taken.

    Raises
    ------
    FileNotFoundError
        If the source or the destination's parent folder does not exist.
    FileExistsError
        If the destination exists and is not an unfinished rechunk.
    ValueError
        On a source that is not an HCS plate, unknown channels or wells, malformed chunk or shard
        shapes, or a destination started with other settings.
    RuntimeError
        If a copied FOV does not match its source (the FOV is not marked complete).

    Notes
    -----
    Memory stays bounded: the copy streams shard by shard, a few shards in flight at a time
    (about 512 MiB of pixels at most, at least one shard). Measured peak memory: 0.3 GB for 8 MiB
    shards (512 x 512 x Z 8, float32), 1.2 GB for 128 MiB shards (2048 x 2048 x Z 8); a single shard
    larger than that costs about three times its size, so split deep stacks along Z with ``shards``
    (e.g. ``(1, 1, 8, -1, -1)``) when memory is tight. A reader such as tensorstore's ``zarr3``
    driver decodes only the inner chunks a read overlaps; readers without sharding support read the
    whole shard. Tracks and other files outside the zarr hierarchy are not copied.

    Examples
    --------
    >>> from viscy_data.rechunk import rechunk
    >>> rechunk("plate.zarr", "plate_sharded.zarr", channels=["Phase3D", "GFP"])  # doctest: +SKIP
    """
    start = time.perf_counter()
    ts = require_tensorstore("viscy rechunk")
    source, dest = Path(source), Path(destination)
    plan = _plan(source, chunks, shards, compressor, channels, wells)
    if dest.resolve() == source.resolve():
        raise ValueError("destination must differ from the source")
    finished = _prepare_destination(dest, plan.settings)
    if finished is not None:
        _logger.info("rechunk: %s is already a finished rechunk of %s", dest, source)
        names = [fov.name for fov in plan.fovs]
        return RechunkResult(dest, names, [], names, finished, 0, time.perf_counter() - start)
    state = _state_dir(dest)
    for rel, content in plan.groups.items():
        if not (dest / rel / "zarr.json").exists():
            _write_json_atomic(dest / rel / "zarr.json", content)

    done_dir, staging_root = state / "done", state / "staging"
    checksums: dict[str, str] = {}
    pending: list[_Fov] = []
    skipped: list[str] = []
    for fov in plan.fovs:
        record = done_dir / f"{fov.name}.json"
        if record.exists() and (dest / fov.name / "zarr.json").exists():
            checksums[fov.name] = json.loads(record.read_text())["blake2b"]
            skipped.append(fov.name)
        else:
            pending.append(fov)
    if skipped:
        _logger.info("rechunk: %d of %d FOVs already complete in %s", len(skipped), len(plan.fovs), dest)

    from tqdm.auto import tqdm

    jobs = {fov.name: _array_jobs(fov, staging_root / fov.name, plan.settings) for fov in pending}
    total_bytes = sum(math.prod(job.shape) * job.dtype.itemsize for fov_jobs in jobs.values() for job in fov_jobs)
    written: list[str] = []
    copied = 0
    with tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
        for fov in pending:
            bar.set_description(f"rechunk {fov.name}")
            final, staging = dest / fov.name, staging_root / fov.name
            # leftovers of an interrupted run: a staged FOV, or a moved one whose record was not written
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            digest, nbytes = _copy_fov(ts, fov, jobs[fov.name], staging, plan.settings, bar)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, final)  # the FOV appears in place complete, or not at all
            _write_json_atomic(done_dir / f"{fov.name}.json", {"fov": fov.name, "blake2b": digest, "bytes": nbytes})
            checksums[fov.name] = digest
            written.append(fov.name)
            copied += nbytes
    checksums = {fov.name: checksums[fov.name] for fov in plan.fovs}
    root = copy.deepcopy(plan.plate_attrs)
    root["attributes"][PROVENANCE_KEY] = {**plan.settings.as_json(), "checksums": checksums}
    _write_json_atomic(dest / "zarr.json", root)  # last: now the plate opens, complete
    shutil.rmtree(state)
    result = RechunkResult(
        destination=dest,
        fovs=[fov.name for fov in plan.fovs],
        written=written,
        skipped=skipped,
        checksums=checksums,
        bytes_written=copied,
        seconds=time.perf_counter() - start,
    )
    _logger.info(
        "rechunk: %s -> %s: %d FOVs written, %d already done, %.1f GB in %.1f s",
        source,
        dest,
        len(written),
        len(skipped),
        copied / 1e9,
        result.seconds,
    )
    return result


# ---------------------------------------------------------------------------------------------- command line


def build_parser(prog: str = "viscy rechunk") -> argparse.ArgumentParser:
    """Build the ``rechunk`` command-line parser (shared by ``viscy``, ``dynaclr`` and ``python -m``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Copy an HCS OME-Zarr plate (NGFF 0.4 or 0.5) into an NGFF 0.5 / zarr v3 plate with sharding: "
            "one shard file per (t, c) plane stack, small inner chunks so that patch reads decode only "
            "what they use. Metadata (channels, scales, normalisation statistics, plate layout) is kept, "
            "every FOV is verified against pixel checksums, and an interrupted run is finished by running "
            "the same command again."
        ),
    )
    parser.add_argument("source", type=Path, help="source plate (.zarr)")
    parser.add_argument("destination", type=Path, help="new plate to write (.zarr), or an unfinished one to finish")
    shape = {"nargs": 5, "type": int, "metavar": ("T", "C", "Z", "Y", "X")}
    parser.add_argument(
        "--chunks",
        **shape,
        default=None,
        help=f"inner chunk shape, -1 = full axis (default: {' '.join(map(str, DEFAULT_CHUNKS))})",
    )
    parser.add_argument(
        "--shards",
        **shape,
        default=None,
        help=f"shard (file) shape, -1 = full axis (default: {' '.join(map(str, DEFAULT_SHARDS))})",
    )
    parser.add_argument("--channels", nargs="+", default=None, metavar="NAME", help="channels to keep (default: all)")
    parser.add_argument("--wells", nargs="+", default=None, metavar="ROW/COL", help="wells to keep (default: all)")
    parser.add_argument(
        "--compressor", choices=_COMPRESSORS, default=DEFAULT_COMPRESSOR, help="blosc compressor of the inner chunks"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(args: Sequence[str] | None = None, prog: str = "viscy rechunk") -> RechunkResult:
    """Run the ``rechunk`` command line."""
    ns = build_parser(prog).parse_args(args)
    try:
        result = rechunk(
            ns.source,
            ns.destination,
            chunks=ns.chunks,
            shards=ns.shards,
            channels=ns.channels,
            wells=ns.wells,
            compressor=ns.compressor,
            progress=not ns.quiet,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        sys.stderr.write(f"{prog}: error: {err}\n")
        raise SystemExit(2) from err
    print(
        f"{result.destination}: {len(result.fovs)} FOVs ({len(result.written)} written and verified, "
        f"{len(result.skipped)} already complete), {result.bytes_written / 1e9:.2f} GB in {result.seconds:.1f} s"
    )
    return result


if __name__ == "__main__":
    main()
