"""Rules that data module arguments and images must satisfy, each written once.

Every rule is a function that returns what is wrong (a message naming the argument and the value), or
``None``/an empty list when nothing is. A data module raises on what they return; a checker such as
``dynaclr check`` collects what they return for every argument and every FOV and reports it all at once. Both
use the same functions, so a check accepts exactly what a run accepts, with the same words.

:class:`DataCheckError` carries several problems at once; the ``viscy``/``dynaclr`` commands print it as a
list, without a traceback (unless ``--debug``), and exit with status 1.

This module is light (no numpy, no torch) so that a command can import it to print a report.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "DataCheckError",
    "anchors_problem",
    "channel_positions_problem",
    "crop_problem",
    "fov_problems",
    "integer_problem",
    "is_finite_number",
    "is_integer",
    "missing_channels_problem",
    "negative_tracks_problem",
    "patch_argument_problems",
    "patch_fit_problems",
    "probability_problem",
    "transform_key_problems",
    "yx_size_problem",
    "z_range_problem",
]


class DataCheckError(ValueError):
    """Arguments or data failed their checks; :attr:`messages` holds every problem found.

    Parameters
    ----------
    messages : sequence of str
        One line per problem, each naming the argument, file or FOV concerned.
    source : str, optional
        What was checked (a data module, a config file), shown in the summary line.
    """

    def __init__(self, messages: Sequence[str], source: str | None = None) -> None:
        self.messages = [str(m) for m in messages]
        self.source = source
        where = f" of {source}" if source else ""
        super().__init__(
            f"{len(self.messages)} problem(s){where}:\n" + "\n".join(f"  - {m}" for m in self.messages)
            if len(self.messages) != 1
            else self.messages[0]
        )

    def format(self) -> str:
        """One ``error: ...`` line per problem, then a summary line (what the command line prints)."""
        n = len(self.messages)
        where = f" in {self.source}" if self.source else ""
        return "\n".join([*(f"error: {m}" for m in self.messages), f"{n} error{'s' * (n != 1)}{where}"])


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: Any, check: Callable[[Any], bool]) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(check(v) for v in value)


def integer_problem(name: str, value: Any, minimum: int) -> str | None:
    """``name`` must be an integer >= ``minimum`` (``batch_size`` >= 1, ``num_workers`` >= 0)."""
    if is_integer(value) and value >= minimum:
        return None
    return f"{name} must be an integer >= {minimum}, got {value!r}"


def probability_problem(name: str, value: Any, upper_open: bool = False) -> str | None:
    """``name`` must be a number in [0, 1] (or [0, 1) with ``upper_open``)."""
    if is_finite_number(value) and 0 <= value and (value < 1 if upper_open else value <= 1):
        return None
    return f"{name} must be a number in [0, {'1)' if upper_open else '1]'}, got {value!r}"


def yx_size_problem(name: str, value: Any) -> str | None:
    """``name`` must be ``[height, width]`` with positive integers."""
    if _pair(value, is_integer) and min(value) >= 1:
        return None
    return f"{name} must be [height, width] with positive integers, got {value!r}"


def z_range_problem(value: Any, name: str = "z_range") -> str | None:
    """``name`` must be ``[start, stop]`` with integers ``0 <= start < stop``."""
    if _pair(value, is_integer) and 0 <= value[0] < value[1]:
        return None
    return f"{name} must be [start, stop] with integers 0 <= start < stop, got {value!r}"


def crop_problem(
    final: Sequence[int], read: Sequence[int], final_name: str = "final_yx_patch_size", read_name: str = "yx_patch_size"
) -> str | None:
    """Check that the final patch, a centre crop of the read patch, is not larger along any axis."""
    if all(f <= r for f, r in zip(final, read)):
        return None
    return (
        f"{final_name} {list(final)} is larger than {read_name} {list(read)}: the final patch is a centre crop of the "
        "read patch"
    )


def patch_fit_problems(
    image_shape: Sequence[int],
    z_range: slice,
    yx_patch_size: Sequence[int],
    *,
    z_key: str = "z_range",
    yx_key: str = "yx_patch_size",
) -> list[tuple[str, str]]:
    """Problems of reading ``z_range`` and ``yx_patch_size`` patches from one image.

    Patches larger than the image are refused, not padded: they could not be centred on the cells.

    Parameters
    ----------
    image_shape : sequence of int
        Shape of the image array, ending with ``(Z, Y, X)``.
    z_range : slice
        Z planes read (``slice(start, stop)``; ``None`` ends mean the image's).
    yx_patch_size : sequence of int
        Patch height and width.
    z_key, yx_key : str
        Names of the two arguments in the messages.

    Returns
    -------
    list[tuple[str, str]]
        ``(key, message)`` pairs with ``key`` one of ``z_key``, ``yx_key``; empty when the patches fit.
    """
    n_z, height, width = (int(s) for s in image_shape[-3:])
    out = []
    start = 0 if z_range.start is None else z_range.start
    stop = n_z if z_range.stop is None else z_range.stop
    if start < 0 or stop > n_z or stop <= start:
        out.append(
            (
                z_key,
                f"{z_key} [{z_range.start}, {z_range.stop}] does not fit the image's {n_z} Z planes "
                f"(use 0 <= start < stop <= {n_z})",
            )
        )
    ph, pw = (int(s) for s in yx_patch_size)
    if ph > height or pw > width:
        out.append(
            (
                yx_key,
                f"{yx_key} [{ph}, {pw}] is larger than the {height} x {width} image: patches cannot be centred on "
                f"the cells (use at most [{height}, {width}])",
            )
        )
    return out


def missing_channels_problem(requested: Sequence[str], available: Sequence[str], name: str) -> str | None:
    """Channels named by argument ``name`` must exist in the image (``available``)."""
    missing = [c for c in requested if c not in available]
    if not missing:
        return None
    return f"{name} {missing} not in the image's channels {list(available)}"


def channel_positions_problem(name: str, positions: Sequence[int], n_channels: int) -> str | None:
    """Input positions named by argument ``name`` (e.g. ``channel_dropout_channels``) must be ``0..n_channels-1``."""
    bad = [p for p in positions if not 0 <= p < n_channels]
    if not bad:
        return None
    return (
        f"{name} {list(positions)} names position(s) {bad}, but the data has {n_channels} source channel(s) "
        f"(positions 0..{n_channels - 1}); set {name} ([] turns it off)"
    )


def anchors_problem(
    n_anchors: int, batch_size: int, world_size: int = 1, what: str = "the training data"
) -> str | None:
    """Check that a training epoch has a full batch on every process (the last, partial batch is dropped).

    Parameters
    ----------
    n_anchors : int
        Valid training anchors.
    batch_size : int
        Anchors per batch.
    world_size : int
        Processes sharing the batches.
    what : str
        What holds the anchors, in the message (e.g. ``"the training FOVs"``).
    """
    if n_anchors // batch_size >= max(world_size, 1):
        return None
    processes = f" on {world_size} processes" if world_size > 1 else ""
    return (
        f"batch_size={batch_size}{processes} needs at least {batch_size * max(world_size, 1)} training anchors, "
        f"{what} have {n_anchors}: an epoch would have no batch; set batch_size <= {n_anchors // max(world_size, 1)}"
    )


def negative_tracks_problem(tracks: Any, split: str) -> str | None:
    """Check that a split holds at least two tracks, so every anchor has a negative from another track.

    Parameters
    ----------
    tracks : pandas.DataFrame
        The split's usable observations, with ``global_track_id`` and ``fov_name`` columns.
    split : str
        The split's name in the message (e.g. ``"validation"``).
    """
    n_tracks = tracks["global_track_id"].nunique()
    if n_tracks >= 2:
        return None
    fovs = sorted(tracks["fov_name"].unique())
    return (
        f"the {split} FOVs {fovs} hold {n_tracks} usable track(s); negatives need at least two: "
        "change split_ratio or seed, or add FOVs"
    )


def transform_key_problems(
    transforms: Sequence[Callable], channel_keys: Sequence[str], argument: str
) -> list[tuple[int, str]]:
    """Find transforms whose ``keys`` name a channel the batches lack (unless they allow missing keys).

    Parameters
    ----------
    transforms : sequence of callable
        Dictionary transforms (with a ``keys`` attribute).
    channel_keys : sequence of str
        Keys of the channels of the batches.
    argument : str
        Name of the list the transforms come from (``"normalizations"``, ``"augmentations"``).

    Returns
    -------
    list[tuple[int, str]]
        ``(position in the list, message)`` for every such transform.
    """
    out = []
    for i, transform in enumerate(transforms):
        keys = getattr(transform, "keys", None)
        if not isinstance(keys, (list, tuple)) or getattr(transform, "allow_missing_keys", False):
            continue
        unknown = [str(k) for k in keys if k not in channel_keys and k != "norm_meta"]
        if unknown:
            out.append(
                (
                    i,
                    f"{argument}[{i}] ({type(transform).__name__}) names key(s) {unknown}, but the batches have the "
                    f"channel keys {list(channel_keys)}; set its keys to those channels",
                )
            )
    return out


def patch_argument_problems(
    batch_size: Any,
    num_workers: Any,
    z_range: Any,
    read_size: Any,
    final_size: Any,
    read_name: str = "yx_patch_size",
) -> list[str]:
    """Every type or range problem of the arguments of a patch data module, checked before any file is opened.

    Parameters
    ----------
    batch_size, num_workers : int
        At least 1 and 0.
    z_range : sequence of int
        ``[start, stop]`` with ``0 <= start < stop``.
    read_size, final_size : sequence of int
        Patch read (named ``read_name``) and its centre crop (``final_yx_patch_size``), positive, crop not larger.
    read_name : str
        Name of the read-size argument.

    Returns
    -------
    list[str]
        One message per problem; empty when none.
    """
    problems = [
        integer_problem("batch_size", batch_size, 1),
        integer_problem("num_workers", num_workers, 0),
        z_range_problem(list(z_range) if isinstance(z_range, tuple) else z_range),
    ]
    sizes = [yx_size_problem(read_name, read_size), yx_size_problem("final_yx_patch_size", final_size)]
    problems += sizes
    if not any(sizes):
        problems.append(crop_problem(final_size, read_size, read_name=read_name))
    return [p for p in problems if p is not None]


def fov_problems(
    positions: Sequence[Any],
    channels: Sequence[str],
    z_range: slice,
    yx_patch_size: Sequence[int],
    yx_key: str = "yx_patch_size",
    array_key: str = "0",
) -> list[str]:
    """Find what keeps FOVs from giving patches: missing channels, ``z_range`` and patch size against each image.

    Parameters
    ----------
    positions : sequence of iohub Position
        The FOVs used.
    channels : sequence of str
        Channels read (argument ``source_channel``).
    z_range : slice
        Z planes read.
    yx_patch_size : sequence of int
        Patch height and width (argument ``yx_key``).
    yx_key : str
        Name of the patch-size argument.
    array_key : str
        Image array of each FOV.

    Returns
    -------
    list[str]
        One message per problem, FOVs with the same problem listed together; empty when none.
    """
    from viscy_data._io import fov_name  # iohub: imported only when FOVs are checked

    found: dict[str, list[str]] = {}
    for position in positions:
        name = fov_name(position)
        missing = missing_channels_problem(channels, position.channel_names, "source_channel")
        fits = patch_fit_problems(position[array_key].shape, z_range, yx_patch_size, yx_key=yx_key)
        for message in [missing] * (missing is not None) + [m for _, m in fits]:
            found.setdefault(message, []).append(name)
    return [
        f"FOV{'s' * (len(names) > 1)} {', '.join(names[:5])}{f' and {len(names) - 5} more' * (len(names) > 5)}: "
        f"{message}"
        for message, names in found.items()
    ]
