"""The on-disk format of normalisation statistics, in one place.

Statistics live in the attributes of each FOV (position) group, and of the plate group, under the
top-level key ``"normalization"``::

    normalization/<channel name>/dataset_statistics/<stat>          -> float
    normalization/<channel name>/fov_statistics/<stat>              -> float   (FOV groups only)
    normalization/<channel name>/timepoint_statistics/<t>/<stat>    -> float   (t as a string: "0", "1", ...)

with ``<stat>`` one of :data:`STATISTICS`. While statistics are being written, the plate group also has
the attribute ``"normalization_pending"`` (:data:`NORM_META_PENDING_KEY`); it is removed in the same
write that stores the plate-level statistics, so a plate that has it was left incomplete by an
interrupted ``viscy preprocess`` (:func:`check_norm_meta_complete` raises on it).

``viscy_utils`` (``viscy preprocess``) writes this format through :func:`merge_norm_meta` and
:func:`compute_statistics`; every reader in ``viscy_data`` and ``dynaclr`` goes through
:func:`read_norm_meta`. Keeping both sides here means what is written is exactly what is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "LEVELS",
    "NORM_META_KEY",
    "NORM_META_PENDING_KEY",
    "PERCENTILES",
    "STATISTICS",
    "check_norm_meta_complete",
    "collate_norm_meta",
    "compute_statistics",
    "merge_norm_meta",
    "read_norm_meta",
    "select_timepoint",
]

#: attribute key holding the statistics, in plate and FOV groups
NORM_META_KEY = "normalization"

#: plate attribute present while statistics are being written (an interrupted write leaves it)
NORM_META_PENDING_KEY = "normalization_pending"

#: statistic levels; ``timepoint_statistics`` is keyed by timepoint (as a string) one level deeper
LEVELS = ("dataset_statistics", "fov_statistics", "timepoint_statistics")

#: percentiles computed by :func:`compute_statistics` (numpy linear interpolation)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)

#: statistic names in the order they are written
STATISTICS = ("mean", "std", "median", "iqr", "p5", "p95", "p95_p5", "p1", "p99", "p99_p1")


def compute_statistics(values: np.ndarray) -> dict[str, float]:
    """Compute the NaN-aware statistics stored for one channel at one level.

    Parameters
    ----------
    values : numpy.ndarray
        Pixel values of any shape (flattened here). NaNs are ignored.

    Returns
    -------
    dict[str, float]
        The keys of :data:`STATISTICS`, in that order: mean, population std (ddof=0), median,
        inter-quartile range (p75 - p25), p5, p95, p95 - p5, p1, p99, p99 - p1.

    Raises
    ------
    ValueError
        If ``values`` is empty.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("cannot compute normalisation statistics of an empty array")
    p1, p5, p25, p50, p75, p95, p99 = (float(v) for v in np.nanpercentile(flat, PERCENTILES))
    return {
        "mean": float(np.nanmean(flat)),
        "std": float(np.nanstd(flat)),
        "median": p50,
        "iqr": p75 - p25,
        "p5": p5,
        "p95": p95,
        "p95_p5": p95 - p5,
        "p1": p1,
        "p99": p99,
        "p99_p1": p99 - p1,
    }


def _to_tensors(node: Any, path: str) -> Any:
    """Convert every leaf of a nested statistics mapping to a 0-d float32 tensor."""
    if isinstance(node, Mapping):
        return {key: _to_tensors(value, f"{path}/{key}") for key, value in node.items()}
    if isinstance(node, (int, float, np.number)) and not isinstance(node, bool):
        import torch  # here, not at module level: tools that only write statistics need no torch

        return torch.tensor(float(node), dtype=torch.float32)
    raise TypeError(f"normalisation metadata at '{path}' should be a number or a mapping, got {type(node).__name__}")


def read_norm_meta(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Read normalisation statistics from a group's attributes.

    Parameters
    ----------
    attrs : Mapping
        The attributes of an FOV or plate group (e.g. ``position.zattrs``).

    Returns
    -------
    dict or None
        ``None`` when the group has no ``"normalization"`` attribute; otherwise the nested dict
        ``{channel: {level: {stat: tensor}}}`` (``timepoint_statistics`` one level deeper) with
        every statistic as a new 0-d ``float32`` tensor.
    """
    raw = attrs.get(NORM_META_KEY) if hasattr(attrs, "get") else None
    if raw is None:
        return None
    return _to_tensors(raw, NORM_META_KEY)


def select_timepoint(norm_meta: dict[str, Any] | None, t: int) -> dict[str, Any] | None:
    """Replace each channel's ``timepoint_statistics`` by the statistics of timepoint ``t``.

    After this, ``norm_meta[channel]["timepoint_statistics"][stat]`` has the same depth as the other
    levels, so ``NormalizeSampled(level="timepoint_statistics")`` can use it. Channels without
    statistics for ``t`` lose the level instead of carrying a wrong one.

    Parameters
    ----------
    norm_meta : dict or None
        As returned by :func:`read_norm_meta`.
    t : int
        Timepoint index.

    Returns
    -------
    dict or None
        A shallow copy with the level flattened; ``None`` if ``norm_meta`` is ``None``.
    """
    if norm_meta is None:
        return None
    out = {}
    for channel, levels in norm_meta.items():
        levels = dict(levels)
        per_t = levels.pop("timepoint_statistics", None)
        if per_t is not None and str(t) in per_t:
            levels["timepoint_statistics"] = per_t[str(t)]
        out[channel] = levels
    return out


def merge_norm_meta(existing: Mapping[str, Any] | None, update: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge new statistics into existing ``normalization`` attributes.

    Other channels and other levels already present are kept; a level present in ``update`` replaces
    the stored level of the same name as a whole (no stale timepoints survive a re-run).

    Parameters
    ----------
    existing : Mapping or None
        The current value of the ``"normalization"`` attribute (may be ``None``).
    update : Mapping
        ``{channel: {level: statistics}}`` with plain Python floats.

    Returns
    -------
    dict
        The merged value, ready to be assigned to the ``"normalization"`` attribute in one write.
    """
    merged = {channel: dict(levels) for channel, levels in (existing or {}).items()}
    for channel, levels in update.items():
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown normalisation level(s) {sorted(unknown)} for channel '{channel}'; use {LEVELS}")
        merged.setdefault(channel, {}).update(levels)
    return merged


def _is_mapping(node: Any) -> bool:
    return type(node) is dict or isinstance(node, Mapping)  # the exact-type test first: abc checks are slow


def _common_tree(metas: Sequence[Any], columns: list) -> Any:
    """Return the nested keys every one of ``metas`` has, each leaf the index of its values in ``columns``."""
    first = metas[0]
    if _is_mapping(first):
        return {
            key: _common_tree([m[key] for m in metas], columns)
            for key in first
            if all(_is_mapping(m) and key in m for m in metas)
        }
    columns.append(metas)
    return len(columns) - 1


def _fill_tree(tree: Any, rows: Sequence[Any]) -> Any:
    if isinstance(tree, dict):
        return {key: _fill_tree(value, rows) for key, value in tree.items()}
    return rows[tree]


def _stack_columns(columns: list[Sequence[Any]], spread: Any) -> list[Any]:
    """Stack each column of per-sample values into a ``(B,)`` tensor (row ``spread`` of each, if given)."""
    import torch  # here, not at module level: tools that only write statistics need no torch

    values = [value for column in columns for value in column]
    if values and all(type(v) is torch.Tensor and v.ndim == 0 and v.dtype == values[0].dtype for v in values):
        # what read_norm_meta gives: 0-d tensors, stacked in one call instead of one per statistic
        table = torch.stack(values).view(len(columns), -1)
        return list((table if spread is None else table[:, spread]).unbind(0))
    stacked = [torch.stack([torch.as_tensor(value) for value in column]) for column in columns]
    return stacked if spread is None else [column[spread] for column in stacked]


def collate_norm_meta(norm_metas: Sequence[dict | None] | dict | None) -> dict | None:
    """Collate per-sample statistics into one dict of ``(B,)`` tensors.

    Samples of one batch may come from FOVs (or experiments) that carry different levels, e.g. only some
    with ``timepoint_statistics`` for their frame: only the channels, levels and statistics that every
    sample has are kept, since a level missing from one sample cannot normalise the batch.

    Parameters
    ----------
    norm_metas : sequence of (dict or None), dict or None
        One :func:`read_norm_meta` / :func:`select_timepoint` result per sample. An already collated
        dict (or ``None``) is returned as is.

    Returns
    -------
    dict or None
        ``None`` when no sample has statistics.

    Raises
    ------
    ValueError
        If some samples have statistics and others do not.
    """
    if norm_metas is None or isinstance(norm_metas, Mapping):
        return norm_metas
    missing = sum(meta is None for meta in norm_metas)
    if missing == len(norm_metas):
        return None
    if missing:
        raise ValueError(
            f"{missing} of {len(norm_metas)} samples in the batch have no normalisation metadata; "
            "compute it for every FOV (viscy preprocess) or normalise without it"
        )
    # samples of one FOV share its statistics dict (datasets cache one per FOV): collate each distinct dict once
    # and spread it over the batch, instead of walking every nested value of every sample
    slots: dict[int, int] = {}
    distinct = []
    for meta in norm_metas:
        if id(meta) not in slots:
            slots[id(meta)] = len(distinct)
            distinct.append(meta)
    columns: list = []
    tree = _common_tree(distinct, columns)
    spread = None
    if len(distinct) < len(norm_metas):
        import torch

        spread = torch.tensor([slots[id(meta)] for meta in norm_metas])
    return _fill_tree(tree, _stack_columns(columns, spread))


def check_norm_meta_complete(plate_attrs: Mapping[str, Any], plate_path: Any) -> None:
    """Raise if an interrupted ``viscy preprocess`` left the plate's statistics incomplete.

    Parameters
    ----------
    plate_attrs : Mapping
        The attributes of the plate group.
    plate_path : str or pathlib.Path
        The plate, for the message.

    Raises
    ------
    ValueError
        If the plate carries :data:`NORM_META_PENDING_KEY`; the message names the plate, the channels
        being written and the command that finishes the job.
    """
    pending = plate_attrs.get(NORM_META_PENDING_KEY) if hasattr(plate_attrs, "get") else None
    if pending is None:
        return
    channels = pending.get("channels") if isinstance(pending, Mapping) else None
    raise ValueError(
        f"the normalisation statistics of {plate_path} are incomplete: `viscy preprocess` was interrupted while "
        f"writing them (channels {channels}); some FOVs have new statistics, others old or none. Run "
        f"`viscy preprocess --data_path {plate_path}` (or `dynaclr preprocess`) again to finish it"
    )
