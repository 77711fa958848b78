"""Import a TIFF / OME-TIFF time-lapse into one position of an HCS OME-Zarr plate.

TIFF reading needs tifffile (``pip install 'viscy-data[tiff]'``); writing uses iohub. The image is read
and written one time point at a time, so files larger than memory import.
"""

from __future__ import annotations

import logging
import math
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from viscy_data.importers.tracks import split_fov_name

__all__ = ["ImportedImage", "TiffImage", "import_tiff", "read_tiff_image", "require_tifffile"]

_logger = logging.getLogger(__name__)

#: the axes of an HCS position's array
PLATE_AXES = "TCZYX"
#: length units to micrometres (OME, ImageJ and tifffile spellings)
_TO_MICROMETRE = {
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
}


def require_tifffile():
    """Import tifffile, or fail with the extra that installs it.

    Raises
    ------
    ImportError
        If tifffile is not installed.
    """
    try:
        import tifffile
    except ImportError as err:
        raise ImportError(
            "tifffile is required to read TIFF files and label images. Install with: pip install 'viscy-data[tiff]'"
        ) from err
    return tifffile


@dataclass(frozen=True)
class TiffImage:
    """What a TIFF file holds, as read by :func:`read_tiff_image`.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    axes : str
        Axes of the series as tifffile reports them (e.g. ``"TCYX"``), before mapping.
    shape : tuple of int
        Shape of the series.
    dtype : numpy.dtype
        Pixel type.
    channel_names : tuple of str or None
        Channel names from OME metadata, if any.
    pixel_size : tuple of (float or None)
        ``(z, y, x)`` voxel size in micrometres; None where the file does not say.
    """

    path: Path
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_names: tuple[str, ...] | None
    pixel_size: tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class ImportedImage:
    """Where :func:`import_tiff` wrote a time-lapse.

    Attributes
    ----------
    plate_path : pathlib.Path
        The HCS OME-Zarr plate.
    fov_name : str
        The position written, e.g. ``"A/1/0"``.
    shape : tuple of int
        ``(T, C, Z, Y, X)`` of its array ``"0"``.
    channel_names : tuple of str
        Channel names of the plate.
    pixel_size : tuple of float
        ``(z, y, x)`` scale written, in micrometres (1.0 where unknown).
    """

    plate_path: Path
    fov_name: str
    shape: tuple[int, int, int, int, int]
    channel_names: tuple[str, ...]
    pixel_size: tuple[float, float, float]


def _micrometres(value: float | None, unit: str | None) -> float | None:
    if value is None or not np.isfinite(value) or value <= 0:
        return None
    if not unit:
        return float(value)
    factor = _TO_MICROMETRE.get(unit.strip().lower())
    if factor is None:
        _logger.warning("unknown length unit %r in TIFF metadata; pixel size ignored", unit)
        return None
    return float(value) * factor


def _ome_metadata(xml: str, series: int) -> tuple[tuple[str, ...] | None, tuple[float | None, ...]]:
    """Channel names and (z, y, x) voxel size of one OME image."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, (None, None, None)
    images = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Image"]
    if series >= len(images):
        return None, (None, None, None)
    pixels = next((e for e in images[series] if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, (None, None, None)
    names = [c.get("Name") for c in pixels if c.tag.rsplit("}", 1)[-1] == "Channel"]
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        sizes.append(_micrometres(float(value), pixels.get(f"PhysicalSize{axis}Unit", "µm")) if value else None)
    channel_names = tuple(names) if names and all(names) else None
    return channel_names, tuple(sizes)


def _imagej_pixel_size(tif, page) -> tuple[float | None, float | None, float | None]:
    metadata = tif.imagej_metadata or {}
    unit = metadata.get("unit")
    if unit in (None, "", "pixel", "pixels"):
        return None, None, None
    sizes = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags.get(tag)
        numerator, denominator = value.value if value is not None else (1, 1)
        sizes.append(_micrometres(denominator / numerator if numerator else None, unit))
    spacing = metadata.get("spacing")
    return _micrometres(float(spacing), unit) if spacing else None, sizes[0], sizes[1]


def read_tiff_image(path: str | Path, series: int = 0) -> TiffImage:
    """Read the axes, shape, channel names and pixel size of a TIFF series (no pixel data).

    Parameters
    ----------
    path : str or pathlib.Path
        TIFF, OME-TIFF or ImageJ hyperstack file.
    series : int, default 0
        Series of the file (OME-TIFFs may hold several images).

    Returns
    -------
    TiffImage
        The metadata; OME channel names and physical sizes, or the ImageJ calibration.

    Raises
    ------
    ImportError
        If tifffile is missing (``pip install 'viscy-data[tiff]'``).
    """
    tifffile = require_tifffile()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TIFF file not found: {path}")
    with tifffile.TiffFile(path) as tif:
        if series >= len(tif.series):
            raise ValueError(f"{path} has {len(tif.series)} series; series={series} does not exist")
        data = tif.series[series]
        channel_names, pixel_size = None, (None, None, None)
        if tif.is_ome and tif.ome_metadata:
            channel_names, pixel_size = _ome_metadata(tif.ome_metadata, series)
        elif tif.is_imagej:
            pixel_size = _imagej_pixel_size(tif, data.keyframe)
        return TiffImage(
            path=path,
            axes=data.axes,
            shape=tuple(int(s) for s in data.shape),
            dtype=np.dtype(data.dtype),
            channel_names=channel_names,
            pixel_size=pixel_size,
        )


def _axis_map(axes: str, shape: tuple[int, ...], path: Path, given: str | None) -> str:
    """Axes of the file in plate letters (T, C, Z, Y, X), one per dimension."""
    if given is not None:
        mapped = given.upper()
        if len(mapped) != len(shape):
            raise ValueError(f"axes={given!r} names {len(mapped)} axes but {path} has {len(shape)}: shape {shape}")
    else:
        # samples (e.g. RGB) are channels when the file has no channel axis
        mapped = axes.replace("S", "C") if "S" in axes and "C" not in axes else axes
    unknown = sorted(set(mapped) - set(PLATE_AXES))
    if unknown or len(set(mapped)) != len(mapped) or not {"Y", "X"} <= set(mapped):
        hint = "" if given is not None else f"; tifffile reports {axes!r}"
        raise ValueError(
            f"cannot map the axes of {path} (shape {shape}{hint}) onto {PLATE_AXES}: give each axis one of the "
            f"letters T, C, Z, Y, X with axes=, e.g. axes='{'TYX' if len(shape) == 3 else 'TCZYX'[-len(shape) :]}'"
        )
    return mapped


def _plate_scale(pixel_size, image: TiffImage) -> tuple[float, float, float]:
    if pixel_size is None:
        sizes = image.pixel_size
    else:
        values = (float(pixel_size),) if np.isscalar(pixel_size) else tuple(float(v) for v in pixel_size)
        if len(values) == 1:
            sizes = (image.pixel_size[0], values[0], values[0])
        elif len(values) == 2:
            sizes = (image.pixel_size[0], *values)
        elif len(values) == 3:
            sizes = values
        else:
            raise ValueError(f"pixel_size takes 1 (yx), 2 (y, x) or 3 (z, y, x) values, got {pixel_size!r}")
        if not all(v is None or (math.isfinite(v) and v > 0) for v in sizes):
            raise ValueError(f"pixel sizes must be positive, got {pixel_size!r}")
    if sizes[1] is None or sizes[2] is None:
        _logger.warning("%s does not say its pixel size; writing 1.0 (give pixel_size= / --pixel-size)", image.path)
    return tuple(1.0 if v is None else float(v) for v in sizes)


def import_tiff(
    tiff_path: str | Path,
    plate_path: str | Path,
    fov_name: str = "A/1/0",
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size: float | Sequence[float] | None = None,
    axes: str | None = None,
    series: int = 0,
    chunks: Sequence[int] | None = None,
    version: str = "0.4",
    overwrite: bool = False,
    progress: bool = True,
) -> ImportedImage:
    """Write a TIFF / OME-TIFF time-lapse as one position of an HCS OME-Zarr plate.

    The plate is created if needed; otherwise its channel names must match. The position's array
    ``"0"`` is ``(T, C, Z, Y, X)`` in the file's pixel type, with the voxel size as its scale.

    Parameters
    ----------
    tiff_path : str or pathlib.Path
        TIFF, OME-TIFF (one or several files) or ImageJ hyperstack.
    plate_path : str or pathlib.Path
        HCS OME-Zarr plate to create or add to.
    fov_name : str, default "A/1/0"
        Position to write, ``row/column/fov``.
    channel_names : sequence of str, optional
        Channel names; default: the OME channel names, else ``ch0, ch1, ...``.
    pixel_size : float or sequence of float, optional
        Voxel size in micrometres, ``yx``, ``(y, x)`` or ``(z, y, x)``; overrides the file's metadata
        (default: the OME physical size or ImageJ calibration; 1.0 with a warning when there is none).
    axes : str, optional
        The file's axes in the letters T, C, Z, Y, X (e.g. ``"TYX"``), when tifffile cannot tell (plain
        multi-page TIFFs) or tells wrong. Missing axes become length-1.
    series : int, default 0
        Series of the file to import.
    chunks : sequence of int, optional
        Chunk shape ``(T, C, Z, Y, X)``; iohub's default (one Z stack per chunk) otherwise.
    version : {"0.4", "0.5"}, default "0.4"
        OME-NGFF version of a new plate (0.4: zarr v2, 0.5: zarr v3).
    overwrite : bool, default False
        Replace the position if it exists.
    progress : bool, default True
        Show a progress bar over time points.

    Returns
    -------
    ImportedImage
        Plate, position, shape, channel names and scale written.

    Raises
    ------
    ValueError
        Axes that cannot be mapped, channel names that do not match the channel count or an existing
        plate's channels, a malformed ``fov_name``.
    FileExistsError
        If the position exists and ``overwrite`` is False.
    ImportError
        If tifffile is missing (``pip install 'viscy-data[tiff]'``).

    Examples
    --------
    >>> import_tiff("movie.ome.tif", "plate.zarr", "A/1/0", channel_names=["cyan", "magenta"],
    ...             pixel_size=0.544)  # doctest: +SKIP
    """
    from iohub.ngff import open_ome_zarr
    from iohub.ngff.models import TransformationMeta

    tifffile = require_tifffile()
    row, col, fov = split_fov_name(fov_name)
    fov_name = f"{row}/{col}/{fov}"
    image = read_tiff_image(tiff_path, series)
    mapped = _axis_map(image.axes, image.shape, image.path, axes)
    sizes = dict(zip(mapped, image.shape))
    plate_shape = tuple(sizes.get(a, 1) for a in PLATE_AXES)
    n_channels = plate_shape[1]
    names = list(channel_names) if channel_names is not None else list(image.channel_names or [])
    if not names:
        names = [f"ch{i}" for i in range(n_channels)]
    if len(names) != n_channels:
        where = "channel_names" if channel_names is not None else "the OME metadata"
        raise ValueError(f"{where} name {len(names)} channel(s) {names} but {image.path} has {n_channels}")
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    scale = _plate_scale(pixel_size, image)
    plate_path = Path(plate_path)
    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}")

    new_plate = not plate_path.exists()
    if new_plate:
        plate = open_ome_zarr(plate_path, layout="hcs", mode="w-", channel_names=names, version=version)
    else:
        plate = open_ome_zarr(plate_path, layout="hcs", mode="r+")
    try:
        if not new_plate and list(plate.channel_names) != names:
            raise ValueError(
                f"{plate_path} has channels {list(plate.channel_names)}, the image would add {names}; "
                "pass channel_names= (--channel-names) that match, or import into a new plate"
            )
        existing = {name.strip("/") for name, _ in plate.positions()}
        if fov_name in existing:
            if not overwrite:
                raise FileExistsError(
                    f"{plate_path} already has position {fov_name}; pass overwrite=True (--overwrite)"
                )
            position = plate[fov_name]
            for key in list(position.array_keys()):
                del position.zgroup[key]
        else:
            position = plate.create_position(row, col, fov)
        target = position.create_zeros(
            "0",
            shape=plate_shape,
            dtype=image.dtype,
            chunks=tuple(chunks) if chunks is not None else None,
            transform=[TransformationMeta(type="scale", scale=[1.0, 1.0, *scale])],
        )
        with tifffile.TiffFile(image.path) as tif:
            _copy_frames(tif, series, mapped, target, plate_shape, progress)
    except BaseException:
        plate.close()
        if new_plate:  # nothing half-written stays behind
            shutil.rmtree(plate_path, ignore_errors=True)
        raise
    plate.close()
    return ImportedImage(
        plate_path=plate_path,
        fov_name=fov_name,
        shape=plate_shape,
        channel_names=tuple(names),
        pixel_size=scale,
    )


def _copy_frames(tif, index: int, mapped: str, target, plate_shape: tuple[int, ...], progress: bool) -> None:
    """Copy series ``index`` of ``tif`` into a (T, C, Z, Y, X) array one time point at a time."""
    series = tif.series[index]
    name = Path(tif.filename).name
    page_ndim = len(series.keyframe.shape)
    leading = mapped[: len(mapped) - page_ndim]
    leading_shape = series.shape[: len(leading)]
    n_pages = int(np.prod(leading_shape, dtype=np.int64))
    present = [a for a in PLATE_AXES if a in mapped]
    if "T" in leading:
        t_axis = leading.index("T")
        page_index = np.arange(n_pages).reshape(leading_shape)
        groups = [np.take(page_index, t, axis=t_axis).reshape(-1) for t in range(plate_shape[0])]
        per_frame = mapped.replace("T", "")
    else:  # one time point, or T within a page: read everything at once
        groups = [None]
        per_frame = mapped
    for t, pages in enumerate(tqdm(groups, desc=f"importing {name}", unit="frame", disable=not progress)):
        data = series.asarray() if pages is None else tif.asarray(key=pages.tolist(), series=index)
        shape = [s for a, s in zip(mapped, series.shape) if a in per_frame]
        data = np.asarray(data).reshape(shape)
        frame = np.transpose(data, [per_frame.index(a) for a in present if a in per_frame])
        full = [a for a in PLATE_AXES if a != "T"] if pages is not None else list(PLATE_AXES)
        frame = frame.reshape([plate_shape[PLATE_AXES.index(a)] for a in full])
        if pages is None:
            target[:] = frame
        else:
            target[t] = frame
