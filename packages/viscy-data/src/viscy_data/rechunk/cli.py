"""The ``rechunk`` command line: ``viscy rechunk``, ``dynaclr rechunk`` and ``python -m viscy_data.rechunk``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from viscy_data.rechunk.driver import RechunkResult, rechunk
from viscy_data.rechunk.plan import _COMPRESSORS, DEFAULT_CHUNKS, DEFAULT_COMPRESSOR, DEFAULT_SHARDS


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
