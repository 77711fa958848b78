"""The unified, lineage-aware table of cell observations of several experiments."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from dynaclr.experiment import ExperimentRegistry
from dynaclr.tau_sampling import tau_probabilities

__all__ = ["MultiExperimentIndex"]

_logger = logging.getLogger(__name__)

_CACHE_VERSION = 2  # 1 was the .npz cache
# side data of the parquet cache: a DataFrame.attrs entry (kept in the pandas schema metadata) and two hidden columns
_CACHE_ATTR = "dynaclr.multi_experiment_index"
_FOV_CODE_COLUMN = "__dynaclr_fov_code"
_TRACK_CODE_COLUMN = "__dynaclr_track_code"
_CATEGORICAL = ("experiment", "condition", "well_name", "fov_name", "global_track_id", "lineage_id")


def _first_csv(folder: Path) -> Path | None:
    """First CSV of a folder in sorted order (deterministic, unlike a bare glob)."""
    found = sorted(folder.glob("*.csv"))
    return found[0] if found else None


def _resolve_roots(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root of every node of a forest given as a parent array (-1 for roots).

    Pointer jumping, O(n log depth). Nodes on a parent cycle never reach a root: they, and the
    nodes hanging below them, become roots. Returns ``(root, parent)`` with those cycles cut.
    """
    n = parent.size
    anc = np.where(parent >= 0, parent, np.arange(n))
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 2):
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        anc = nxt
    unresolved = parent[anc] >= 0  # a true root has no parent; anything else sits on a cycle
    if unresolved.any():
        _logger.warning("%d tracks are on or below parent cycles; they are treated as roots", int(unresolved.sum()))
        anc[unresolved] = np.flatnonzero(unresolved)
        parent = np.where(unresolved, -1, parent)
    return anc, parent


class MultiExperimentIndex:
    """All cell observations of the experiments of a registry, with lineage and valid anchors.

    Parameters
    ----------
    registry : ExperimentRegistry
        The experiments.
    z_range : slice or tuple[int, int]
        Z planes read for each patch.
    yx_patch_size : tuple[int, int]
        (height, width) of the patches, used for border clamping.
    tau_range_hours : tuple[float, float]
        Range of temporal offsets between an anchor and its positive, in hours; converted to frames
        per experiment with :meth:`ExperimentRegistry.tau_range_frames`. ``tau = 0`` is never used, except
        when an experiment's range is exactly ``(0, 0)`` frames: then every anchor is its own positive (the
        same frame under independent augmentations, SimCLR-style; the time-agnostic ablation of DynaCLR).
    include_wells : list[str] or None
        Only these wells (``"A/1"``) if given.
    exclude_fovs : list[str] or None
        FOVs (``"A/1/0"``) to leave out.
    cache_dir : str or Path or None
        If given, the built table is saved there as parquet (``multi_experiment_index_<key>.parquet``, column dtypes
        kept, written atomically) and reloaded by later constructions with the same experiments, parameters and
        tracking files: the key hashes them, CSV sizes and modification times included, so any change rebuilds it.
        An unreadable or stale cache file is rebuilt with a warning; a failed write only warns.

    Attributes
    ----------
    tracks : pandas.DataFrame
        One row per cell observation: the CSV columns plus ``experiment, condition, well_name,
        fov_name, global_track_id, hours_post_infection, fluorescence_channel, position,
        lineage_id, y_clamp, x_clamp``; index 0..N-1.
    valid_anchors : pandas.DataFrame
        Rows of ``tracks`` that have a positive (own track or a descendant at ``t + tau``); fresh
        index 0..M-1, which is what samplers yield.
    positions : list
        iohub ``Position`` of every FOV that contributed tracks, in load order.

    Notes
    -----
    Positives are restricted to the anchor's own track and its descendants (after a division):
    never a sister or cousin, which the root ``lineage_id`` alone would allow.
    """

    def __init__(
        self,
        registry: ExperimentRegistry,
        z_range: slice | tuple[int, int],
        yx_patch_size: tuple[int, int],
        tau_range_hours: tuple[float, float] = (0.5, 2.0),
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.registry = registry
        self.z_range = z_range if isinstance(z_range, slice) else slice(*z_range)
        self.yx_patch_size = (int(yx_patch_size[0]), int(yx_patch_size[1]))
        self.tau_range_hours = (float(tau_range_hours[0]), float(tau_range_hours[1]))
        self.include_wells = None if include_wells is None else list(include_wells)
        self.exclude_fovs = None if exclude_fovs is None else list(exclude_fovs)
        self.tau_frames = {
            e.name: registry.tau_range_frames(e.name, self.tau_range_hours) for e in registry.experiments
        }
        self._plates: list = []
        self.positions: list = []
        self._fov_keys: list[tuple[str, str]] = []  # (experiment, fov_name) per position
        self._fov_shapes: list[tuple[int, int]] = []
        cache_file = self._cache_file(cache_dir) if cache_dir is not None else None
        if cache_file is None or not cache_file.exists() or not self._load_cache(cache_file):
            self._build()
            if cache_file is not None:
                self._save_cache(cache_file)
        self._finish()

    # ------------------------------------------------------------------ building
    def _open_positions(self, exp) -> list[tuple[str, object]]:
        from iohub.ngff import open_ome_zarr

        plate = open_ome_zarr(exp.data_path, layout="hcs", mode="r")
        self._plates.append(plate)
        out = []
        for name, position in plate.positions():
            fov = name.strip("/")
            if self.include_wells is not None and "/".join(fov.split("/")[:2]) not in self.include_wells:
                continue
            if self.exclude_fovs is not None and fov in self.exclude_fovs:
                continue
            out.append((fov, position))
        return out

    def _build(self) -> None:
        tables, lengths = [], []
        for exp in self.registry.experiments:
            tracks_root = Path(exp.tracks_path)
            for fov, position in self._open_positions(exp):
                csv = _first_csv(tracks_root / fov)
                if csv is None:
                    _logger.warning("Experiment '%s': no tracking CSV in %s, FOV skipped", exp.name, tracks_root / fov)
                    continue
                df = pd.read_csv(csv)
                missing = {"track_id", "t", "y", "x"} - set(df.columns)
                if missing:
                    raise ValueError(f"{csv}: missing tracking columns {sorted(missing)}")
                self.positions.append(position)
                self._fov_keys.append((exp.name, fov))
                self._fov_shapes.append(tuple(int(s) for s in position["0"].shape[-2:]))
                tables.append(df)
                lengths.append(len(df))
        if tables:
            tracks = pd.concat(tables, ignore_index=True)
        else:
            tracks = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("track_id", "t", "y", "x")})
        fov_code = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        self._assemble(tracks, fov_code)

    def _assemble(self, tracks: pd.DataFrame, fov_code: np.ndarray) -> None:
        """Add the derived columns, lineage and clamping to the concatenated CSV rows."""
        exps = {e.name: e for e in self.registry.experiments}
        fov_exp = np.array([k[0] for k in self._fov_keys], dtype=object)
        fov_names = np.array([k[1] for k in self._fov_keys], dtype=object)
        well_of = np.array(["/".join(f.split("/")[:2]) for f in fov_names], dtype=object)
        cond_of = np.array(
            [
                next((c for c, wells in exps[e].condition_wells.items() if w in wells), "unknown")
                for e, w in zip(fov_exp, well_of)
            ],
            dtype=object,
        )
        for col in ("track_id", "t"):
            values = pd.to_numeric(tracks[col], errors="coerce").to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise ValueError(f"tracking column '{col}' must hold integers")
            tracks[col] = values.astype(np.int64)
        # lineage: one node per (fov, track_id); parent looked up in the same FOV
        track_key = (fov_code << 32) | (tracks["track_id"].to_numpy() & 0xFFFFFFFF)
        track_code, uniq_keys = pd.factorize(track_key, sort=False)
        uniq_keys = np.asarray(uniq_keys, dtype=np.int64)
        n_tracks = uniq_keys.size
        first_row = np.full(n_tracks, -1, dtype=np.int64)
        first_row[track_code[::-1]] = np.arange(len(tracks) - 1, -1, -1)
        parent = np.full(n_tracks, -1, dtype=np.int64)
        if "parent_track_id" in tracks.columns and n_tracks:
            ptid = pd.to_numeric(tracks["parent_track_id"], errors="coerce").to_numpy(dtype=np.float64)[first_row]
            ok = np.isfinite(ptid)
            pkey = (fov_code[first_row][ok] << 32) | (ptid[ok].astype(np.int64) & 0xFFFFFFFF)
            found = pd.Index(uniq_keys).get_indexer(pkey)
            cand = np.full(n_tracks, -1, dtype=np.int64)
            cand[np.flatnonzero(ok)] = found
            parent = np.where(cand == np.arange(n_tracks), -1, cand)
        root, parent = _resolve_roots(parent)
        track_fov = fov_code[first_row] if n_tracks else np.zeros(0, dtype=np.int64)
        track_tid = tracks["track_id"].to_numpy()[first_row] if n_tracks else np.zeros(0, dtype=np.int64)
        gid = np.array(
            [f"{fov_exp[f]}_{fov_names[f]}_{tid}" for f, tid in zip(track_fov, track_tid)], dtype=object
        ).astype(str)
        tracks["experiment"] = pd.Categorical.from_codes(*self._codes(fov_exp, fov_code))
        tracks["condition"] = pd.Categorical.from_codes(*self._codes(cond_of, fov_code))
        tracks["well_name"] = pd.Categorical.from_codes(*self._codes(well_of, fov_code))
        tracks["fov_name"] = pd.Categorical.from_codes(*self._codes(fov_names, fov_code))
        tracks["global_track_id"] = pd.Categorical.from_codes(track_code, categories=pd.Index(gid))
        per_fov_hpi0 = np.array([exps[e].start_hpi for e in fov_exp], dtype=np.float64)
        per_fov_rate = np.array([exps[e].interval_minutes / 60 for e in fov_exp], dtype=np.float64)
        tracks["hours_post_infection"] = per_fov_hpi0[fov_code] + tracks["t"].to_numpy() * per_fov_rate[fov_code]
        fluo = np.array([s[1] if len(s) >= 2 else "" for s in (exps[e].source_channel for e in fov_exp)], dtype=object)
        tracks["fluorescence_channel"] = pd.Categorical.from_codes(*self._codes(fluo, fov_code))
        root_gid = gid[root] if n_tracks else gid
        lineage_codes, lineage_names = pd.factorize(root_gid)
        tracks["lineage_id"] = pd.Categorical.from_codes(
            lineage_codes[track_code] if n_tracks else track_code, categories=pd.Index(lineage_names)
        )
        # border: drop centroids outside the image, clamp the rest so the patch fits
        shapes = np.array(self._fov_shapes, dtype=np.float64).reshape(-1, 2)
        height, width = shapes[fov_code, 0], shapes[fov_code, 1]
        y, x = tracks["y"].to_numpy(dtype=np.float64), tracks["x"].to_numpy(dtype=np.float64)
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        ph, pw = self.yx_patch_size
        tracks["y_clamp"] = np.clip(y, ph // 2, np.maximum(height - ph // 2, ph // 2))
        tracks["x_clamp"] = np.clip(x, pw // 2, np.maximum(width - pw // 2, pw // 2))
        keep = np.flatnonzero(inside)
        self.tracks = tracks.iloc[keep].reset_index(drop=True)
        self._fov_code = fov_code[keep]
        self._track_code = np.asarray(track_code, dtype=np.int64)[keep]
        self._parent = parent

    @staticmethod
    def _codes(per_fov: np.ndarray, fov_code: np.ndarray) -> tuple[np.ndarray, pd.Index]:
        codes, cats = pd.factorize(per_fov.astype(str)) if per_fov.size else (np.zeros(0, int), pd.Index([]))
        return np.asarray(codes)[fov_code] if fov_code.size else np.zeros(0, dtype=np.int64), pd.Index(cats)

    # ------------------------------------------------------------------ lineage structures
    def _finish(self) -> None:
        """Position column, subtree lists, (track, t) lookup and the valid anchors."""
        positions = np.empty(len(self.positions), dtype=object)
        positions[:] = self.positions
        self.tracks["position"] = positions[self._fov_code] if len(self.tracks) else pd.Series(dtype=object)
        n_tracks = self._parent.size
        # subtree (self + descendants) of every track, as CSR: ancestor -> descendants
        node = np.arange(n_tracks)
        anc, desc = [node], [node]
        cur = self._parent.copy()
        while True:
            has = np.flatnonzero(cur >= 0)
            if has.size == 0:
                break
            anc.append(cur[has])
            desc.append(node[has])
            node, cur = node[has], self._parent[cur[has]]
        anc_all, desc_all = np.concatenate(anc), np.concatenate(desc)
        order = np.argsort(anc_all, kind="stable")
        self._sub_ptr = np.concatenate([[0], np.cumsum(np.bincount(anc_all, minlength=n_tracks))])
        self._sub_idx = desc_all[order]
        t = self.tracks["t"].to_numpy(dtype=np.int64)
        self._t0 = int(t.min()) if t.size else 0
        max_tau = max([abs(v) for fr in self.tau_frames.values() for v in fr] + [0])
        self._t_span = (int(t.max()) - self._t0 + 1 if t.size else 1) + 2 * max_tau + 1
        keys = self._track_code * self._t_span + (t - self._t0)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        self._exp_code, exp_names = pd.factorize(self.tracks["experiment"].astype(str)) if len(t) else ([], [])
        self._exp_code = np.asarray(self._exp_code, dtype=np.int64)
        self._exp_names = list(exp_names)
        valid = self._valid_mask()
        self._anchor_rows = np.flatnonzero(valid)
        self.valid_anchors = self.tracks.iloc[self._anchor_rows].reset_index(drop=True)

    def _tau_bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([self.tau_frames[e][0] for e in self._exp_names], dtype=np.int64)
        hi = np.array([self.tau_frames[e][1] for e in self._exp_names], dtype=np.int64)
        codes = self._exp_code[rows]
        return (lo[codes], hi[codes]) if lo.size else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def _candidates(self, rows: np.ndarray):
        """For anchors (tracks rows), every (anchor, tau) pair and its candidate positive rows.

        Returns the pair arrays (anchor position, tau, count) and the expanded (pair, lo, hi)
        ranges into the sorted (track, t) keys.
        """
        rows = np.asarray(rows, dtype=np.int64)
        tmin, tmax = self._tau_bounds(rows)
        n_tau = np.maximum(tmax - tmin + 1, 0)
        pair_anchor = np.repeat(np.arange(rows.size), n_tau)
        start = np.concatenate([[0], np.cumsum(n_tau)[:-1]]) if rows.size else np.zeros(0, np.int64)
        pair_tau = tmin[pair_anchor] + np.arange(pair_anchor.size) - start[pair_anchor]
        track = self._track_code[rows]
        n_sub = (self._sub_ptr[track + 1] - self._sub_ptr[track])[pair_anchor]
        exp_pair = np.repeat(np.arange(pair_anchor.size), n_sub)
        sub_start = np.concatenate([[0], np.cumsum(n_sub)[:-1]]) if n_sub.size else np.zeros(0, np.int64)
        within = np.arange(exp_pair.size) - sub_start[exp_pair]
        desc = self._sub_idx[self._sub_ptr[track[pair_anchor[exp_pair]]] + within]
        t_target = self.tracks["t"].to_numpy(dtype=np.int64)[rows][pair_anchor[exp_pair]] + pair_tau[exp_pair]
        key = desc * self._t_span + (t_target - self._t0)
        lo = np.searchsorted(self._sorted_keys, key, side="left")
        hi = np.searchsorted(self._sorted_keys, key, side="right")
        # tau = 0 (the anchor itself) only counts for an explicit same-frame range (0, 0)
        same_frame = ((tmin == 0) & (tmax == 0))[pair_anchor[exp_pair]]
        cnt = np.where((pair_tau[exp_pair] == 0) & ~same_frame, 0, hi - lo)
        pair_count = np.bincount(exp_pair, weights=cnt, minlength=pair_anchor.size).astype(np.int64)
        return pair_anchor, pair_tau, pair_count, start, exp_pair, lo, cnt

    def _valid_mask(self) -> np.ndarray:
        n = len(self.tracks)
        valid = np.zeros(n, dtype=bool)
        for chunk in np.array_split(np.arange(n), max(1, n // 200_000)):
            pair_anchor, _, pair_count, *_ = self._candidates(chunk)
            has = np.bincount(pair_anchor, weights=pair_count, minlength=chunk.size) > 0
            valid[chunk] = has
        return valid

    def sample_positives(
        self, anchor_rows: np.ndarray, rng: np.random.Generator, tau_decay_rate: float = 2.0
    ) -> np.ndarray:
        """Draw a positive for each anchor: its own track or a descendant at ``t + tau``.

        ``tau`` is drawn with :func:`dynaclr.tau_sampling.tau_probabilities` (``tau = 0``
        excluded unless the range is ``(0, 0)``); when nothing exists at that offset the first offset in
        ``tau_min..tau_max`` that has a candidate is used. Among the candidates one is picked uniformly.

        Parameters
        ----------
        anchor_rows : numpy.ndarray
            Row positions in :attr:`tracks` (see :attr:`anchor_track_rows`).
        rng : numpy.random.Generator
            Source of randomness.
        tau_decay_rate : float
            Decay of the offset distribution.

        Returns
        -------
        numpy.ndarray
            Row positions in :attr:`tracks` of the positives.

        Raises
        ------
        ValueError
            If an anchor has no positive at any offset (it is not a valid anchor).
        """
        rows = np.asarray(anchor_rows, dtype=np.int64)
        pair_anchor, pair_tau, pair_count, start, exp_pair, lo, cnt = self._candidates(rows)
        tmin, tmax = self._tau_bounds(rows)
        drawn = np.empty(rows.size, dtype=np.int64)
        for code in np.unique(self._exp_code[rows]):
            sel = np.flatnonzero(self._exp_code[rows] == code)
            lo_t, hi_t = self.tau_frames[self._exp_names[code]]
            probs = tau_probabilities(lo_t, hi_t, tau_decay_rate, exclude_zero=(lo_t, hi_t) != (0, 0))
            drawn[sel] = lo_t + rng.choice(probs.size, size=sel.size, p=probs) if probs.sum() > 0 else lo_t
        chosen = start + (drawn - tmin)
        missing = pair_count[chosen] == 0
        if missing.any():
            has = pair_count > 0
            first = np.full(rows.size, -1, dtype=np.int64)
            ok_pairs = np.flatnonzero(has)
            anchors_ok, idx = np.unique(pair_anchor[ok_pairs], return_index=True)
            first[anchors_ok] = ok_pairs[idx]
            chosen = np.where(missing, first, chosen)
            if (chosen < 0).any():
                bad = self.tracks.iloc[rows[chosen < 0][:5]][["experiment", "fov_name", "track_id", "t"]]
                raise ValueError(f"anchors without any positive in tau range:\n{bad}")
        is_chosen = np.zeros(pair_anchor.size, dtype=bool)
        is_chosen[chosen] = True
        take = np.flatnonzero(is_chosen[exp_pair] & (cnt > 0))
        cum = np.cumsum(cnt[take])
        totals = pair_count[chosen]
        # cumulative offset of each anchor's first candidate (anchors are in order in `take`)
        anchor_start = np.concatenate([[0], np.cumsum(totals)[:-1]])
        target = anchor_start + np.floor(rng.random(rows.size) * totals).astype(np.int64)
        hit = np.searchsorted(cum, target, side="right")
        offset = target - (cum[hit] - cnt[take][hit])
        return self._key_order[lo[take][hit] + offset]

    # ------------------------------------------------------------------ public helpers
    @property
    def anchor_track_rows(self) -> np.ndarray:
        """Row positions in :attr:`tracks` of the rows of :attr:`valid_anchors`."""
        return self._anchor_rows

    @property
    def fov_keys(self) -> list[tuple[str, str]]:
        """(experiment, fov_name) of every entry of :attr:`positions`."""
        return list(self._fov_keys)

    @property
    def fov_codes(self) -> np.ndarray:
        """Position (in :attr:`positions`) of the FOV of every row of :attr:`tracks`."""
        return self._fov_code

    @property
    def experiment_groups(self) -> dict[str, np.ndarray]:
        """Experiment -> row positions in :attr:`tracks`."""
        return self._groups("experiment")

    @property
    def condition_groups(self) -> dict[str, np.ndarray]:
        """Condition -> row positions in :attr:`tracks`."""
        return self._groups("condition")

    def _groups(self, column: str) -> dict[str, np.ndarray]:
        codes, names = pd.factorize(self.tracks[column].astype(str), sort=True)
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
        return dict(zip(names, np.split(order, bounds)))

    def summary(self) -> str:
        """Human-readable counts of observations, anchors and conditions per experiment."""
        lines = [
            f"MultiExperimentIndex: {len(self.registry.experiments)} experiments, "
            f"{len(self.tracks)} total observations, {len(self.valid_anchors)} valid anchors"
        ]
        obs = self.tracks["experiment"].astype(str).value_counts()
        anchors = self.valid_anchors["experiment"].astype(str).value_counts()
        for exp in self.registry.experiments:
            sub = self.tracks.loc[self.tracks["experiment"] == exp.name, "condition"].astype(str).value_counts()
            conds = ", ".join(f"{c}({n})" for c, n in sorted(sub.items()))
            lines.append(
                f"  {exp.name}: {obs.get(exp.name, 0)} observations, {anchors.get(exp.name, 0)} anchors, "
                f"conditions: {conds}"
            )
        return "\n".join(lines)

    def close(self) -> None:
        """Close the plates opened for :attr:`positions`."""
        for plate in self._plates:
            plate.close()
        self._plates.clear()

    # ------------------------------------------------------------------ cache
    def _cache_file(self, cache_dir: str | Path) -> Path:
        files = []
        for exp in self.registry.experiments:
            for csv in sorted(Path(exp.tracks_path).glob("*/*/*/*.csv")):
                stat = csv.stat()
                files.append([str(csv), stat.st_size, stat.st_mtime_ns])
        payload = {
            "version": _CACHE_VERSION,
            "experiments": [dataclasses.asdict(e) for e in self.registry.experiments],
            "zero_fill": self.registry.zero_fill_missing_channels,
            "z_range": [self.z_range.start, self.z_range.stop, self.z_range.step],
            "patch": self.yx_patch_size,
            "tau": self.tau_range_hours,
            "include_wells": self.include_wells,
            "exclude_fovs": self.exclude_fovs,
            "files": files,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
        return Path(cache_dir) / f"multi_experiment_index_{digest}.parquet"

    def _save_cache(self, path: Path) -> None:
        """Write the table to ``path`` atomically; a failed write leaves no file and only warns."""
        if self.tracks.empty:
            # parquet keeps no categories for a column without rows, and an empty index is cheap to rebuild
            _logger.info("No observations: the index cache %s is not written", path)
            return
        table = self.tracks.drop(columns="position", errors="ignore")
        clash = {_FOV_CODE_COLUMN, _TRACK_CODE_COLUMN} & set(table.columns)
        if clash:
            _logger.warning("Index cache not written: the tracking CSVs have reserved column(s) %s", sorted(clash))
            return
        table[_FOV_CODE_COLUMN] = self._fov_code
        table[_TRACK_CODE_COLUMN] = self._track_code
        table.attrs = {
            _CACHE_ATTR: {
                "version": _CACHE_VERSION,
                "key": path.stem,
                "n_categories": {
                    name: len(col.cat.categories)
                    for name, col in table.items()
                    if isinstance(col.dtype, pd.CategoricalDtype)
                },
                "fov_keys": [list(k) for k in self._fov_keys],
                "fov_shapes": [list(s) for s in self._fov_shapes],
                # one int per track: compact and exact as little-endian int64 bytes
                "parent": base64.b64encode(self._parent.astype("<i8").tobytes()).decode("ascii"),
            }
        }
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a unique sibling, so concurrent writers (one per DDP rank) never share a half-written file;
            # not mkstemp, whose 0600 mode would hide a shared cache from other users
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
            table.to_parquet(tmp, engine="pyarrow", index=False)
            os.replace(tmp, path)
        except Exception as err:  # a cache is an optimisation: never fail the index because of it
            _logger.warning(
                "Could not write the index cache %s (%s: %s); continuing without it", path, type(err).__name__, err
            )
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            return
        _logger.info("Saved the multi-experiment index cache to %s", path)

    def _load_cache(self, path: Path) -> bool:
        """Restore the table from ``path``; on any defect warn and return False (the caller rebuilds)."""
        try:
            tracks = pd.read_parquet(path, engine="pyarrow")
            meta = tracks.attrs.get(_CACHE_ATTR)
            tracks.attrs = {}
            if not isinstance(meta, dict) or meta.get("version") != _CACHE_VERSION or meta.get("key") != path.stem:
                raise ValueError(f"not a version-{_CACHE_VERSION} index cache for key {path.stem}")
            n_categories = {
                name: len(col.cat.categories)
                for name, col in tracks.items()
                if isinstance(col.dtype, pd.CategoricalDtype)
            }
            if n_categories != meta["n_categories"]:
                raise ValueError("categorical columns differ from those written")
            fov_keys = [(str(e), str(f)) for e, f in meta["fov_keys"]]
            fov_shapes = [(int(h), int(w)) for h, w in meta["fov_shapes"]]
            parent = np.frombuffer(base64.b64decode(meta["parent"]), dtype="<i8").astype(np.int64)
            fov_code = tracks.pop(_FOV_CODE_COLUMN).to_numpy(dtype=np.int64)
            track_code = tracks.pop(_TRACK_CODE_COLUMN).to_numpy(dtype=np.int64)
            if len(fov_shapes) != len(fov_keys) or np.any((fov_code < 0) | (fov_code >= len(fov_keys))):
                raise ValueError("FOV codes out of range")
            if np.any((track_code < 0) | (track_code >= parent.size)) or np.any(
                (parent < -1) | (parent >= parent.size)
            ):
                raise ValueError("track codes or parents out of range")
            by_exp = {exp.name: dict(self._open_positions(exp)) for exp in self.registry.experiments}
            missing = [f"{e}:{f}" for e, f in fov_keys if f not in by_exp.get(e, {})]
            if missing:
                raise ValueError(f"FOV(s) no longer in the plates: {missing[:5]}")
        except Exception as err:  # corrupt, truncated, foreign or stale file: rebuild instead of failing
            _logger.warning(
                "Ignoring the unreadable index cache %s (%s: %s); rebuilding it", path, type(err).__name__, err
            )
            self.close()
            return False
        self._fov_keys, self._fov_shapes = fov_keys, fov_shapes
        self._parent, self._fov_code, self._track_code = parent, fov_code, track_code
        self.positions = [by_exp[e][f] for e, f in fov_keys]
        self.tracks = tracks
        _logger.info("Loaded the multi-experiment index from cache %s", path)
        return True
