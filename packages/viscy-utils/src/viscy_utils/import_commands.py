"""``viscy import-tracks`` and ``viscy import-images``: bring tracker outputs and TIFF time-lapses into VisCy layouts.

Both are plain commands (no Lightning): :func:`viscy_utils.cli.run_cli` hands them their arguments
before it builds the Lightning CLI. The work is done by :mod:`viscy_data.importers`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["import_images", "import_tracks"]

_EXAMPLES_TRACKS = """examples:
  viscy import-tracks merged_linked.xml -o tracks --fov A/1/0 --plate plate.zarr --pixel-size 0.544
  viscy import-tracks 01_RES/res_track.txt -o tracks --fov A/1/0
  viscy import-tracks tracks_a.csv tracks_b.csv -o tracks --fov A/1/0 --fov A/1/1 --column t=frame

The tracks of each FOV go to <output>/<row>/<col>/<fov>/tracks.csv with the columns
track_id, t, y, x, id, parent_track_id, parent_id: use <output> as tracks_path in experiments.yml.
"""

_EXAMPLES_IMAGES = """examples:
  viscy import-images movie.ome.tif --plate plate.zarr --fov A/1/0
  viscy import-images movie.tif --plate plate.zarr --fov A/1/0 --channel-names cyan magenta --pixel-size 0.544
  viscy import-images stack.tif --plate plate.zarr --fov B/2/0 --axes TYX
"""


def _pair(text: str) -> tuple[str, str]:
    name, sep, column = text.partition("=")
    if not sep or not name or not column:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE_COLUMN (e.g. t=frame), got {text!r}")
    return name, column


def _fovs(parser: argparse.ArgumentParser, sources: Sequence[str], fovs: Sequence[str] | None) -> list[str]:
    fovs = list(fovs or ["A/1/0"])
    if len(fovs) != len(sources):
        parser.error(f"got {len(sources)} input file(s) but {len(fovs)} --fov; give one --fov per file")
    if len(set(fovs)) != len(fovs):
        parser.error(f"--fov values must differ, got {fovs}")
    return fovs


def _pixel_size(values: Sequence[float] | None) -> float | tuple[float, ...] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _log_to_stderr() -> None:
    logger = logging.getLogger("viscy_data")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _tracks_parser(prog: str) -> argparse.ArgumentParser:
    from viscy_data.importers import TRACK_FORMATS

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert tracks from TrackMate, the Cell Tracking Challenge format or a table (ultrack, napari) "
        "into the per-FOV tracks CSV layout of VisCy.",
        epilog=_EXAMPLES_TRACKS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", metavar="TRACKS", help="tracks file(s), one per FOV")
    parser.add_argument("-o", "--output", required=True, help="root of the tracks layout (tracks_path)")
    parser.add_argument("--fov", action="append", help="FOV of each file, row/col/fov (default A/1/0); repeat")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", *TRACK_FORMATS],
        help="input format; auto: .xml TrackMate, .txt CTC, .csv/.tsv table",
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        nargs="+",
        metavar="SIZE",
        help="pixel size (yx, y x or z y x) that turns physical positions into pixels of the image "
        "(TrackMate: default the XML's calibration; table: default none, positions are pixels)",
    )
    parser.add_argument("--plate", help="HCS plate of the images: checks the FOVs exist and the tracks fit the image")
    parser.add_argument(
        "--spot-feature", action="append", default=[], metavar="NAME", help="TrackMate spot feature to keep; repeat"
    )
    parser.add_argument("--labels-dir", help="CTC label images folder (default: next to res_track.txt)")
    parser.add_argument(
        "--column",
        action="append",
        type=_pair,
        default=[],
        metavar="NAME=FILE_COLUMN",
        help="table column name for a layout column, e.g. t=frame; repeat",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing tracks.csv files")
    return parser


def import_tracks(args: Sequence[str], prog: str = "viscy import-tracks") -> list:
    """Run ``viscy import-tracks`` on command-line arguments.

    Parameters
    ----------
    args : sequence of str
        Arguments after the subcommand.
    prog : str
        Program name for help and errors.

    Returns
    -------
    list of pathlib.Path
        The CSVs written.
    """
    from viscy_data.importers import TrackImportError
    from viscy_data.importers import import_tracks as import_one

    parser = _tracks_parser(prog)
    options = parser.parse_args(list(args))
    fovs = _fovs(parser, options.sources, options.fov)
    _log_to_stderr()
    shapes = _plate_shapes(parser, options.plate, fovs) if options.plate else dict.fromkeys(fovs)
    read_kwargs = {
        "pixel_size": _pixel_size(options.pixel_size),
        "spot_features": options.spot_feature,
        "labels_dir": options.labels_dir,
        "columns": dict(options.column) or None,
    }
    written = []
    for source, fov in zip(options.sources, fovs):
        try:
            path = import_one(
                source,
                options.output,
                fov,
                options.format,
                image_shape=shapes[fov],
                overwrite=options.overwrite,
                **read_kwargs,
            )
        except (TrackImportError, ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
            parser.exit(2, f"{prog}: error: {err}\n")
        print(f"{source} -> {path}")
        written.append(path)
    return written


def _plate_shapes(parser: argparse.ArgumentParser, plate_path: str, fovs: Sequence[str]) -> dict[str, tuple]:
    """(Z, Y, X) of each FOV's image, or a parser error naming a FOV the plate lacks."""
    from iohub.ngff import open_ome_zarr

    try:
        plate = open_ome_zarr(plate_path, layout="hcs", mode="r")
    except Exception as err:  # iohub raises several types for a missing or foreign store
        parser.exit(2, f"{parser.prog}: error: cannot open {plate_path} as an HCS OME-Zarr plate: {err}\n")
    with plate:
        available = {name.strip("/"): position for name, position in plate.positions()}
        missing = [fov for fov in fovs if fov.strip("/") not in available]
        if missing:
            parser.exit(
                2, f"{parser.prog}: error: {plate_path} has no position(s) {missing}; it has {sorted(available)}\n"
            )
        shapes = {}
        for fov in fovs:
            z, y, x = available[fov.strip("/")]["0"].shape[-3:]
            shapes[fov] = (z, y, x) if z > 1 else (y, x)
        return shapes


def _images_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write TIFF / OME-TIFF time-lapses as positions of an HCS OME-Zarr plate "
        "(array '0', T C Z Y X), keeping channel names and pixel size.",
        epilog=_EXAMPLES_IMAGES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", metavar="TIFF", help="TIFF file(s), one per FOV")
    parser.add_argument("--plate", required=True, help="HCS OME-Zarr plate to create or add to")
    parser.add_argument("--fov", action="append", help="position of each file, row/col/fov (default A/1/0); repeat")
    parser.add_argument(
        "--channel-names", nargs="+", metavar="NAME", help="channel names (default: from OME, else ch0...)"
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        nargs="+",
        metavar="UM",
        help="voxel size in micrometres: yx, y x or z y x (default: from the file's metadata)",
    )
    parser.add_argument("--axes", help="the file's axes in T, C, Z, Y, X letters when tifffile cannot tell (e.g. TYX)")
    parser.add_argument("--series", type=int, default=0, help="series of the file (default 0)")
    parser.add_argument("--chunks", type=int, nargs=5, metavar=("T", "C", "Z", "Y", "X"), help="chunk shape")
    parser.add_argument("--version", default="0.4", choices=["0.4", "0.5"], help="OME-NGFF version of a new plate")
    parser.add_argument("--overwrite", action="store_true", help="replace existing positions")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def import_images(args: Sequence[str], prog: str = "viscy import-images") -> list:
    """Run ``viscy import-images`` on command-line arguments.

    Parameters
    ----------
    args : sequence of str
        Arguments after the subcommand.
    prog : str
        Program name for help and errors.

    Returns
    -------
    list of viscy_data.importers.ImportedImage
        What was written.
    """
    from viscy_data.importers import import_tiff

    parser = _images_parser(prog)
    options = parser.parse_args(list(args))
    fovs = _fovs(parser, options.sources, options.fov)
    _log_to_stderr()
    written = []
    for source, fov in zip(options.sources, fovs):
        try:
            result = import_tiff(
                source,
                options.plate,
                fov,
                channel_names=options.channel_names,
                pixel_size=_pixel_size(options.pixel_size),
                axes=options.axes,
                series=options.series,
                chunks=options.chunks,
                version=options.version,
                overwrite=options.overwrite,
                progress=not options.no_progress,
            )
        except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
            parser.exit(2, f"{prog}: error: {err}\n")
        z, y, x = result.pixel_size
        print(
            f"{source} -> {result.plate_path}/{result.fov_name}: shape {result.shape} (T, C, Z, Y, X), "
            f"channels {list(result.channel_names)}, voxel {z:g} x {y:g} x {x:g} um"
        )
        written.append(result)
    return written
