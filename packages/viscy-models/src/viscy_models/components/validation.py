"""Argument and input-shape checks shared by the architectures, with errors that name the argument and value."""

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


def check_positive_ints(model: str, **values: object) -> None:
    """Raise a ValueError naming the first argument in ``values`` that is not an integer >= 1.

    Parameters
    ----------
    model : str
        Name of the model, for the message.
    **values
        The arguments to check, by name.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {name} must be an integer >= 1, got {value!r}.")


def check_choice(value: object, name: str, model: str, choices: Sequence[object]) -> None:
    """Raise a ValueError naming the argument unless ``value`` is one of ``choices``.

    Parameters
    ----------
    value : object
        The argument value.
    name : str
        Name of the argument, for the message.
    model : str
        Name of the model, for the message.
    choices : sequence
        The allowed values.
    """
    if value not in choices:
        raise ValueError(f"{model}: {name} must be one of {list(choices)}, got {value!r}.")


def check_odd_kernel(kernel_size: int | Sequence[int], name: str, model: str, dims: int) -> tuple[int, ...]:
    """Return ``kernel_size`` (an int or ``dims`` ints) as ``dims`` odd positive integers, or raise a ValueError.

    Parameters
    ----------
    kernel_size : int or sequence of int
        The kernel size argument; an int means the same size along every axis.
    name : str
        Name of the argument, for the message.
    model : str
        Name of the model, for the message.
    dims : int
        Number of entries required.

    Returns
    -------
    tuple of int
        The kernel size.
    """
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size,) * dims
    if len(kernel_size) != dims or any(int(k) < 1 or int(k) % 2 == 0 for k in kernel_size):
        raise ValueError(f"{model}: {name} must be {dims} odd positive integers ('same' padding), got {kernel_size!r}.")
    return tuple(int(k) for k in kernel_size)


def default_filters(num_filters: Sequence[int], num_blocks: int, model: str) -> list[int]:
    """Return the U-Net level widths: ``num_filters`` if given, else ``16 * 2**i`` for ``num_blocks + 1`` levels.

    Parameters
    ----------
    num_filters : sequence of int
        Explicit widths, or empty for the default.
    num_blocks : int
        Number of down-sampling steps.
    model : str
        Name of the model, for the message.

    Returns
    -------
    list of int
        ``num_blocks + 1`` channel counts.
    """
    if len(num_filters) == 0:
        return [16 * 2**i for i in range(num_blocks + 1)]
    if len(num_filters) != num_blocks + 1 or any(int(f) < 1 for f in num_filters):
        raise ValueError(
            f"{model}: num_filters must be num_blocks + 1 = {num_blocks + 1} positive widths (one per level, "
            f"num_blocks={num_blocks}) or empty for 16 * 2**i, got {tuple(num_filters)}."
        )
    return [int(f) for f in num_filters]
