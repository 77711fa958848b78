"""One copy job per array of a FOV: destination zarr v3 metadata, sharding codecs and shard regions.

Each array of a FOV (images and labels alike) becomes an :class:`_ArrayJob`: its destination shape
after channel selection, its inner chunk and shard shapes (given for T, C, Z, Y, X and matched to the
array's own axes), its codecs and the shard-sized regions the copy streams.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from viscy_data.rechunk.metadata import _load_attrs, _split_ome
from viscy_data.rechunk.plan import _Fov, _Settings


def _fill_value_json(value: Any, dtype: np.dtype) -> Any:
    if value is None:
        return False if dtype == np.bool_ else 0
    value = np.asarray(value, dtype=dtype).item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, complex):
        return [_fill_value_json(value.real, np.float64), _fill_value_json(value.imag, np.float64)]
    return value


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
