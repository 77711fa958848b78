"""Positive candidates: observations of an anchor's own track or a descendant, ``tau`` frames later.

For a batch of anchors everything is expanded at once into flat arrays:

* an *offset* is one (anchor, tau) pair, for every tau in the anchor's experiment's frame range;
* a *range* is one (offset, subtree track) pair: the observations of that track at ``t + tau``, a
  contiguous run of the table's rows sorted by (track, t).

The number of candidates of an offset is the sum of its ranges; ``tau = 0`` has none. A same-frame sampler
(``same_frame_positives=True``, the ablation of DynaCLR) finds and draws exactly as the temporal one, then
returns each anchor as its own positive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dynaclr.index.lineage import Subtrees
from dynaclr.tau_sampling import tau_probabilities

__all__ = ["PositiveCandidates", "PositiveSampler"]


def _starts(counts: np.ndarray) -> np.ndarray:
    """Offset of each group's first element when groups of ``counts`` elements are laid end to end."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]) if counts.size else np.zeros(0, np.int64)


class PositiveCandidates(NamedTuple):
    """Candidate positives of a batch of anchors (see the module docstring for offsets and ranges).

    Attributes
    ----------
    offset_anchor, offset_tau, offset_count : numpy.ndarray
        Per offset: the anchor (position in the batch), tau, and the number of candidates.
    first_offset : numpy.ndarray
        Per anchor: its first offset (offsets of an anchor are consecutive, by increasing tau).
    range_offset, range_start, range_count : numpy.ndarray
        Per range: its offset, its first row in the (track, t)-sorted order, its number of rows.
    """

    offset_anchor: np.ndarray
    offset_tau: np.ndarray
    offset_count: np.ndarray
    first_offset: np.ndarray
    range_offset: np.ndarray
    range_start: np.ndarray
    range_count: np.ndarray


class PositiveSampler:
    """Find and draw positives for anchors given as rows of a table of observations.

    Parameters
    ----------
    track_of_row, t_of_row, experiment_of_row : numpy.ndarray
        Track code, frame and experiment code of every row.
    tau_frames : numpy.ndarray
        ``(n_experiments, 2)`` inclusive frame range of tau per experiment code.
    subtrees : Subtrees
        Each track's subtree (itself and its descendants): where positives may come from.
    describe : callable, optional
        Turns anchor rows into text for error messages.
    same_frame_positives : bool, default False
        Return every anchor as its own positive (the same frame, augmented independently downstream:
        SimCLR-style, the time-agnostic ablation of DynaCLR). Everything else is unchanged, so the ablation
        trains identically to the temporal sampler: the valid anchors are those with a positive in
        ``tau_frames`` and the random stream is consumed by the same draws.
    """

    def __init__(
        self,
        track_of_row: np.ndarray,
        t_of_row: np.ndarray,
        experiment_of_row: np.ndarray,
        tau_frames: np.ndarray,
        subtrees: Subtrees,
        describe: Callable[[np.ndarray], str] = str,
        same_frame_positives: bool = False,
    ) -> None:
        self.track_of_row = track_of_row
        self.t_of_row = t_of_row
        self.experiment_of_row = experiment_of_row
        self.tau_frames = np.asarray(tau_frames, dtype=np.int64).reshape(-1, 2)
        self.same_frame_positives = bool(same_frame_positives)
        self._tau_min, self._tau_max = self.tau_frames[:, 0].copy(), self.tau_frames[:, 1].copy()
        self.subtrees = subtrees
        self.describe = describe
        # rows sorted by the key (track, t - t0); t_span leaves room for every t + tau
        self._t0 = int(t_of_row.min()) if t_of_row.size else 0
        max_tau = int(np.abs(self.tau_frames).max()) if self.tau_frames.size else 0
        self._t_span = (int(t_of_row.max()) - self._t0 + 1 if t_of_row.size else 1) + 2 * max_tau + 1
        keys = track_of_row * self._t_span + (t_of_row - self._t0)
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]

    def tau_bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the inclusive tau range of its experiment."""
        if not self.tau_frames.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        codes = self.experiment_of_row[rows]
        return self._tau_min[codes], self._tau_max[codes]

    def candidates(self, rows: np.ndarray) -> PositiveCandidates:
        """All candidate positives of the anchors ``rows``, by offset and range."""
        rows = np.asarray(rows, dtype=np.int64)
        tau_min, tau_max = self.tau_bounds(rows)
        n_tau = np.maximum(tau_max - tau_min + 1, 0)
        offset_anchor = np.repeat(np.arange(rows.size), n_tau)
        first_offset = _starts(n_tau)
        offset_tau = tau_min[offset_anchor] + np.arange(offset_anchor.size) - first_offset[offset_anchor]
        track = self.track_of_row[rows]
        n_members = self.subtrees.sizes(track)[offset_anchor]
        range_offset = np.repeat(np.arange(offset_anchor.size), n_members)
        within = np.arange(range_offset.size) - _starts(n_members)[range_offset]
        anchor_of_range = offset_anchor[range_offset]
        member = self.subtrees.members[self.subtrees.start[track[anchor_of_range]] + within]
        t_target = self.t_of_row[rows][anchor_of_range] + offset_tau[range_offset]
        key = member * self._t_span + (t_target - self._t0)
        range_start = np.searchsorted(self._sorted_keys, key, side="left")
        range_end = np.searchsorted(self._sorted_keys, key, side="right")
        range_count = np.where(offset_tau[range_offset] == 0, 0, range_end - range_start)
        offset_count = np.bincount(range_offset, weights=range_count, minlength=offset_anchor.size).astype(np.int64)
        return PositiveCandidates(
            offset_anchor, offset_tau, offset_count, first_offset, range_offset, range_start, range_count
        )

    def has_positive(self, rows: np.ndarray) -> np.ndarray:
        """Whether each of the anchors ``rows`` has at least one candidate positive."""
        found = self.candidates(rows)
        return np.bincount(found.offset_anchor, weights=found.offset_count, minlength=len(rows)) > 0

    def sample(self, rows: np.ndarray, rng: np.random.Generator, tau_decay_rate: float = 2.0) -> np.ndarray:
        """Draw one positive per anchor; see :meth:`dynaclr.index.MultiExperimentIndex.sample_positives`."""
        rows = np.asarray(rows, dtype=np.int64)
        found = self.candidates(rows)
        tau_min, _ = self.tau_bounds(rows)
        drawn_tau = np.empty(rows.size, dtype=np.int64)
        experiment = self.experiment_of_row[rows]
        for code in np.unique(experiment):
            sel = np.flatnonzero(experiment == code)
            lo, hi = (int(v) for v in self.tau_frames[code])
            probs = tau_probabilities(lo, hi, tau_decay_rate, exclude_zero=True)
            drawn_tau[sel] = lo + rng.choice(probs.size, size=sel.size, p=probs) if probs.sum() > 0 else lo
        chosen = found.first_offset + (drawn_tau - tau_min)
        empty = found.offset_count[chosen] == 0
        if empty.any():  # nothing at the drawn tau: the smallest tau that has a candidate
            usable = np.flatnonzero(found.offset_count > 0)
            anchors, first = np.unique(found.offset_anchor[usable], return_index=True)
            fallback = np.full(rows.size, -1, dtype=np.int64)
            fallback[anchors] = usable[first]
            chosen = np.where(empty, fallback, chosen)
            if (chosen < 0).any():
                raise ValueError(f"anchors without any positive in tau range:\n{self.describe(rows[chosen < 0][:5])}")
        # one candidate uniformly among the chosen offset's ranges, laid end to end per anchor
        is_chosen = np.zeros(found.offset_anchor.size, dtype=bool)
        is_chosen[chosen] = True
        taken = np.flatnonzero(is_chosen[found.range_offset] & (found.range_count > 0))
        counts = found.range_count[taken]
        cumulative = np.cumsum(counts)
        totals = found.offset_count[chosen]
        target = _starts(totals) + np.floor(rng.random(rows.size) * totals).astype(np.int64)
        hit = np.searchsorted(cumulative, target, side="right")
        within = target - (cumulative[hit] - counts[hit])
        if self.same_frame_positives:  # drawn as above all the same, so both samplers use one random stream
            return rows.copy()
        return self._order[found.range_start[taken][hit] + within]
