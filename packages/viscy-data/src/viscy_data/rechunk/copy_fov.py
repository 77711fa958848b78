"""Copying one FOV into its staging folder and verifying it against pixel checksums.

Arrays are streamed shard by shard through a few worker threads (memory stays bounded), each shard's
pixels are hashed on the way in and again when read back from disk; a mismatch stops the rechunk before
the FOV is moved into place.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from viscy_data.patch_reader import array_spec, tensorstore_context
from viscy_data.rechunk.arrays import _ArrayJob
from viscy_data.rechunk.metadata import (
    _as_ngff_05,
    _group_json,
    _keep_channels_in_norm,
    _load_attrs,
    _split_ome,
    _write_json_atomic,
)
from viscy_data.rechunk.plan import _Fov, _Settings

#: bytes of pixels in flight per worker thread (each worker holds one shard; see ``_workers``)
_MEMORY_BUDGET = 512 * 1024**2


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
