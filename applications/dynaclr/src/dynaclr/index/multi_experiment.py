"""The unified, lineage-aware table of cell observations of several experiments."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dynaclr.experiment import ExperimentRegistry, well_name_problem
from dynaclr.index.anchors import valid_anchor_rows
from dynaclr.index.cache import CachedIndex, cache_path, read_cache, write_cache
from dynaclr.index.lineage import link_tracks, subtrees
from dynaclr.index.positives import PositiveSampler
from dynaclr.index.tracks_csv import describe_dropped_rows, first_csv, inside_image, read_tracks_csv
from viscy_data.checks import patch_fit_problems

__all__ = ["MultiExperimentIndex"]

_logger = logging.getLogger(__name__)


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
        per experiment with :meth:`ExperimentRegistry.tau_range_frames`. ``tau = 0`` is never used.
    include_wells : list[str] or None
        Only these wells (``"A/1"``) if given.
    exclude_fovs : list[str] or None
        FOVs (``"A/1/0"``) to leave out.
    cache_dir : str or Path or None
        If given, the built table is saved there as parquet (``multi_experiment_index_<key>.parquet``, column dtypes
        kept, written atomically) and reloaded by later constructions with the same experiments, parameters and
        tracking files: the key hashes them, CSV sizes and modification times included, so any change rebuilds it.
        An unreadable or stale cache file is rebuilt with a warning; a failed write only warns.
    same_frame_positives : bool, default False
        Every anchor is its own positive (the same frame, augmented independently: SimCLR-style, the
        time-agnostic ablation of DynaCLR). The valid anchors and the random draws stay those of
        ``tau_range_hours``, so a model trained with it differs from DynaCLR only in its positives.

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
        same_frame_positives: bool = False,
    ) -> None:
        self.registry = registry
        self.same_frame_positives = bool(same_frame_positives)
        self.z_range = z_range if isinstance(z_range, slice) else slice(*z_range)
        self.yx_patch_size = (int(yx_patch_size[0]), int(yx_patch_size[1]))
        self.tau_range_hours = (float(tau_range_hours[0]), float(tau_range_hours[1]))
        self.include_wells = None if include_wells is None else list(include_wells)
        bad_wells = [why for why in map(well_name_problem, self.include_wells or []) if why is not None]
        if bad_wells:
            raise ValueError("include_wells: " + "; ".join(bad_wells))
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
            dropped = {}
            for fov, position in self._open_positions(exp):
                shape = tuple(int(s) for s in position["0"].shape)
                geometry = patch_fit_problems(shape, self.z_range, self.yx_patch_size)
                if geometry:
                    raise ValueError(
                        f"Experiment '{exp.name}', FOV {fov} of {exp.data_path}: " + "; ".join(m for _, m in geometry)
                    )
                csv = first_csv(tracks_root / fov)
                if csv is None:
                    _logger.warning("Experiment '%s': no tracking CSV in %s, FOV skipped", exp.name, tracks_root / fov)
                    continue
                fov_tracks = read_tracks_csv(csv, (shape[0], shape[-2], shape[-1]))
                if fov_tracks.errors:
                    raise ValueError(f"{csv} (experiment '{exp.name}', FOV {fov}): " + "; ".join(fov_tracks.errors))
                if fov_tracks.n_dropped:
                    dropped[fov] = fov_tracks
                self.positions.append(position)
                self._fov_keys.append((exp.name, fov))
                self._fov_shapes.append(shape[-2:])
                tables.append(fov_tracks.table)
                lengths.append(len(fov_tracks.table))
            if dropped:
                _logger.warning("Experiment '%s': %s", exp.name, describe_dropped_rows(dropped))
        if tables:
            tracks = pd.concat(tables, ignore_index=True)
        else:
            tracks = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("track_id", "t", "y", "x")})
        fov_code = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        self._assemble(tracks, fov_code)

    def _assemble(self, tracks: pd.DataFrame, fov_code: np.ndarray) -> None:
        """Add the derived columns, lineage and clamping to the concatenated CSV rows."""
        exps = {e.name: e for e in self.registry.experiments}
        fov_experiment = np.array([k[0] for k in self._fov_keys], dtype=object)
        fov_names = np.array([k[1] for k in self._fov_keys], dtype=object)
        fov_well = np.array(["/".join(f.split("/")[:2]) for f in fov_names], dtype=object)
        fov_condition = np.array(
            [
                next((c for c, wells in exps[e].condition_wells.items() if w in wells), "unknown")
                for e, w in zip(fov_experiment, fov_well)
            ],
            dtype=object,
        )
        self._warn_unmatched_conditions(fov_experiment, fov_well, fov_condition)
        parent_track_id = None
        if "parent_track_id" in tracks.columns:
            parent_track_id = pd.to_numeric(tracks["parent_track_id"], errors="coerce").to_numpy(dtype=np.float64)
        links = link_tracks(fov_code, tracks["track_id"].to_numpy(), parent_track_id)
        n_tracks = links.parent.size
        track_fov = fov_code[links.first_row] if n_tracks else np.zeros(0, dtype=np.int64)
        track_id = tracks["track_id"].to_numpy()[links.first_row] if n_tracks else np.zeros(0, dtype=np.int64)
        global_ids = np.array(
            [f"{fov_experiment[f]}_{fov_names[f]}_{tid}" for f, tid in zip(track_fov, track_id)], dtype=object
        ).astype(str)
        tracks["experiment"] = pd.Categorical.from_codes(*self._codes(fov_experiment, fov_code))
        tracks["condition"] = pd.Categorical.from_codes(*self._codes(fov_condition, fov_code))
        tracks["well_name"] = pd.Categorical.from_codes(*self._codes(fov_well, fov_code))
        tracks["fov_name"] = pd.Categorical.from_codes(*self._codes(fov_names, fov_code))
        tracks["global_track_id"] = pd.Categorical.from_codes(links.track_of_row, categories=pd.Index(global_ids))
        start_hpi = np.array([exps[e].start_hpi for e in fov_experiment], dtype=np.float64)
        hours_per_frame = np.array([exps[e].interval_minutes / 60 for e in fov_experiment], dtype=np.float64)
        tracks["hours_post_infection"] = start_hpi[fov_code] + tracks["t"].to_numpy() * hours_per_frame[fov_code]
        fluorescence = np.array(
            [s[1] if len(s) >= 2 else "" for s in (exps[e].source_channel for e in fov_experiment)], dtype=object
        )
        tracks["fluorescence_channel"] = pd.Categorical.from_codes(*self._codes(fluorescence, fov_code))
        root_ids = global_ids[links.root] if n_tracks else global_ids
        lineage_codes, lineage_names = pd.factorize(root_ids)
        tracks["lineage_id"] = pd.Categorical.from_codes(
            lineage_codes[links.track_of_row] if n_tracks else links.track_of_row, categories=pd.Index(lineage_names)
        )
        # border: drop centroids outside the image, clamp the rest so the patch fits
        shapes = np.array(self._fov_shapes, dtype=np.float64).reshape(-1, 2)
        height, width = shapes[fov_code, 0], shapes[fov_code, 1]
        y = pd.to_numeric(tracks["y"], errors="coerce").to_numpy(dtype=np.float64)
        x = pd.to_numeric(tracks["x"], errors="coerce").to_numpy(dtype=np.float64)
        inside = inside_image(y, x, height, width)
        ph, pw = self.yx_patch_size
        tracks["y_clamp"] = np.clip(y, ph // 2, np.maximum(height - ph // 2, ph // 2))
        tracks["x_clamp"] = np.clip(x, pw // 2, np.maximum(width - pw // 2, pw // 2))
        keep = np.flatnonzero(inside)
        self.tracks = tracks.iloc[keep].reset_index(drop=True)
        self._fov_code = fov_code[keep]
        self._track_code = links.track_of_row[keep]
        self._parent = links.parent

    def _warn_unmatched_conditions(self, fov_exp: np.ndarray, well_of: np.ndarray, cond_of: np.ndarray) -> None:
        """Warn about wells of FOVs in no condition (their cells get ``"unknown"``) and conditions without FOVs."""
        for exp in self.registry.experiments:
            mine = fov_exp == exp.name
            orphans = sorted(set(well_of[mine & (cond_of == "unknown")]))
            if orphans:
                _logger.warning(
                    "Experiment '%s': wells %s are in no condition of condition_wells; their cells get condition "
                    "'unknown'",
                    exp.name,
                    orphans,
                )
            present = set(well_of[mine])
            for condition, wells in exp.condition_wells.items():
                if not present.intersection(wells):
                    _logger.warning(
                        "Experiment '%s': condition '%s' has no tracked FOV (wells %s)", exp.name, condition, wells
                    )

    @staticmethod
    def _codes(per_fov: np.ndarray, fov_code: np.ndarray) -> tuple[np.ndarray, pd.Index]:
        codes, cats = pd.factorize(per_fov.astype(str)) if per_fov.size else (np.zeros(0, int), pd.Index([]))
        return np.asarray(codes)[fov_code] if fov_code.size else np.zeros(0, dtype=np.int64), pd.Index(cats)

    # ------------------------------------------------------------------ positives and anchors
    def _finish(self) -> None:
        """Position column, positive lookup and the valid anchors."""
        positions = np.empty(len(self.positions), dtype=object)
        positions[:] = self.positions
        self.tracks["position"] = positions[self._fov_code] if len(self.tracks) else pd.Series(dtype=object)
        t = self.tracks["t"].to_numpy(dtype=np.int64)
        codes, names = pd.factorize(self.tracks["experiment"].astype(str)) if len(t) else ([], [])
        self._exp_code = np.asarray(codes, dtype=np.int64)
        self._exp_names = list(names)
        tree = subtrees(self._parent)
        self._sub_ptr, self._sub_idx = tree.start, tree.members
        self._positives = PositiveSampler(
            self._track_code,
            t,
            self._exp_code,
            np.array([self.tau_frames[name] for name in self._exp_names], dtype=np.int64).reshape(-1, 2),
            tree,
            describe=lambda rows: str(self.tracks.iloc[rows][["experiment", "fov_name", "track_id", "t"]]),
            same_frame_positives=self.same_frame_positives,
        )
        self._anchor_rows = valid_anchor_rows(self._positives, len(self.tracks))
        self.valid_anchors = self.tracks.iloc[self._anchor_rows].reset_index(drop=True)

    def sample_positives(
        self, anchor_rows: np.ndarray, rng: np.random.Generator, tau_decay_rate: float = 2.0
    ) -> np.ndarray:
        """Draw a positive for each anchor: its own track or a descendant at ``t + tau``.

        ``tau`` is drawn with :func:`dynaclr.tau_sampling.tau_probabilities` (``tau = 0``
        excluded); when nothing exists at that offset the first offset in ``tau_min..tau_max``
        that has a candidate is used. Among the candidates one is picked uniformly. With
        ``same_frame_positives`` the same draws are made and every anchor is returned as its own positive.

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
        return self._positives.sample(anchor_rows, rng, tau_decay_rate)

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
    def fov_shapes(self) -> np.ndarray:
        """``(n_fov, 2)`` image height and width of every entry of :attr:`positions`."""
        return np.asarray(self._fov_shapes, dtype=np.int64).reshape(-1, 2)

    @property
    def experiment_names(self) -> list[str]:
        """Experiments present in :attr:`tracks`, indexed by :attr:`experiment_codes`."""
        return list(self._exp_names)

    @property
    def experiment_codes(self) -> np.ndarray:
        """Position in :attr:`experiment_names` of the experiment of every row of :attr:`tracks`."""
        return self._exp_code

    @property
    def experiment_rows(self) -> list[np.ndarray]:
        """Row positions in :attr:`tracks` of each experiment of :attr:`experiment_names`."""
        order = np.argsort(self._exp_code, kind="stable")
        bounds = np.cumsum(np.bincount(self._exp_code, minlength=len(self._exp_names)))[:-1]
        return np.split(order, bounds)

    @property
    def lineage_codes(self) -> np.ndarray:
        """Integer code of the ``lineage_id`` of every row of :attr:`tracks`."""
        return self.tracks["lineage_id"].cat.codes.to_numpy(dtype=np.int64)

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
        return cache_path(
            cache_dir,
            self.registry,
            self.z_range,
            self.yx_patch_size,
            self.tau_range_hours,
            self.include_wells,
            self.exclude_fovs,
        )

    def _save_cache(self, path: Path) -> None:
        """Write the table to ``path`` atomically; a failed write leaves no file and only warns."""
        state = CachedIndex(
            self.tracks, self._fov_keys, self._fov_shapes, self._parent, self._fov_code, self._track_code
        )
        write_cache(path, state)

    def _load_cache(self, path: Path) -> bool:
        """Restore the table from ``path``; on any defect warn and return False (the caller rebuilds)."""
        try:
            cached = read_cache(path)
            by_exp = {exp.name: dict(self._open_positions(exp)) for exp in self.registry.experiments}
            missing = [f"{e}:{f}" for e, f in cached.fov_keys if f not in by_exp.get(e, {})]
            if missing:
                raise ValueError(f"FOV(s) no longer in the plates: {missing[:5]}")
        except Exception as err:  # corrupt, truncated, foreign or stale file: rebuild instead of failing
            _logger.warning(
                "Ignoring the unreadable index cache %s (%s: %s); rebuilding it", path, type(err).__name__, err
            )
            self.close()
            return False
        self._fov_keys, self._fov_shapes = cached.fov_keys, cached.fov_shapes
        self._parent, self._fov_code, self._track_code = cached.parent, cached.fov_code, cached.track_code
        self.positions = [by_exp[e][f] for e, f in cached.fov_keys]
        self.tracks = cached.tracks
        _logger.info("Loaded the multi-experiment index from cache %s", path)
        return True
