"""Input-shape checks shared by the architectures, with errors that name the expected multiple."""

from __future__ import annotations

from collections.abc import Sequence


def check_divisible(sizes: Sequence[int], multiple: int, model: str, axes: str) -> None:
    """Raise a ValueError unless every size is a positive multiple of ``multiple``.

    Parameters
    ----------
    sizes : sequence of int
        The sizes to check (for example the Y and X sizes of the input).
    multiple : int
        The required multiple.
    model : str
        Name of the model, for the message.
    axes : str
        Name of the axes, for the message (for example ``"Y and X"``).
    """
    sizes = tuple(int(s) for s in sizes)
    if any(s <= 0 or s % multiple for s in sizes):
        raise ValueError(f"{model}: {axes} sizes must be multiples of {multiple}, got {sizes}.")


def default_filters(num_filters: Sequence[int], num_blocks: int) -> list[int]:
    """Return the U-Net level widths: ``num_filters`` if given, else ``16 * 2**i`` for ``num_blocks + 1`` levels.

    Parameters
    ----------
    num_filters : sequence of int
        Explicit widths, or empty for the default.
    num_blocks : int
        Number of down-sampling steps.

    Returns
    -------
    list of int
        ``num_blocks + 1`` channel counts.
    """
    if len(num_filters) == 0:
        return [16 * 2**i for i in range(num_blocks + 1)]
    if len(num_filters) != num_blocks + 1:
        raise ValueError(f"num_filters must have num_blocks + 1 = {num_blocks + 1} entries, got {list(num_filters)}.")
    return [int(f) for f in num_filters]
