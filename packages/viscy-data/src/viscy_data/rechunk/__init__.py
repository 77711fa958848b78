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

The parts live in modules named for their concern: :mod:`~viscy_data.rechunk.plan` (settings and the
FOVs to copy), :mod:`~viscy_data.rechunk.metadata` (group metadata, NGFF 0.4 to 0.5),
:mod:`~viscy_data.rechunk.arrays` (per-array zarr v3 metadata, codecs and shard regions),
:mod:`~viscy_data.rechunk.copy_fov` (the verified copy of one FOV), :mod:`~viscy_data.rechunk.state`
(resume bookkeeping and provenance), :mod:`~viscy_data.rechunk.driver` (:func:`rechunk` itself) and
:mod:`~viscy_data.rechunk.cli` (the command line).
"""

from viscy_data.rechunk.cli import build_parser, main
from viscy_data.rechunk.driver import RechunkResult, rechunk
from viscy_data.rechunk.plan import DEFAULT_CHUNKS, DEFAULT_COMPRESSOR, DEFAULT_SHARDS
from viscy_data.rechunk.state import PROVENANCE_KEY

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
