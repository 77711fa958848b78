"""Check a configuration and every experiment it names before anything runs: ``dynaclr check -c config.yml``.

The same checks run at the start of ``dynaclr fit``/``validate``/``predict`` (through
:meth:`~dynaclr.datamodule.MultiExperimentDataModule.preflight_check`), before logs, checkpoints or
``config.yaml`` are written. Every problem is collected, not only the first, and each names the experiment,
the file and the configuration key concerned:

- argument ranges: batch size, worker count, patch sizes, ``z_range``, probabilities, ``tau_range``, weights;
- the experiments file: missing/unknown keys, types, duplicate names, wells in ``row/col`` form, channels;
- every plate: ``z_range`` and patch size against every FOV's image, channels, normalisation metadata (with
  the ``dynaclr preprocess`` command to run) when a transform needs it;
- every tracking CSV: unreadable or empty files, missing columns, missing or non-integer ``track_id``/``t``
  (with line numbers), timepoints outside the image; rows with NaN or out-of-image centroids are counted per
  FOV (a warning: the index leaves them out);
- conditions: wells missing from the plate, conditions without cells, cells in no condition;
- the index: a ``tau_range`` no experiment can satisfy, no training anchors, fewer anchors than one batch per
  process.

Errors stop a run; warnings are reported and the run goes on.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from dynaclr.problems import CheckReport, yaml_error_text
from viscy_data import checks

__all__ = [
    "argument_problems",
    "check_command",
    "check_config",
    "check_datamodule",
    "model_input_problems",
    "preprocess_command",
]

_PREFIX = "data.init_args."
_CHECKED_STAGES = ("fit", "validate", "predict")
_TRANSFORM_LISTS = ("normalizations", "augmentations")
#: FOV names listed in one message before "and N more"
_MAX_LISTED = 5


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def preprocess_command(data_path: str | Path, channels: list[str]) -> str:
    """Return the ``dynaclr preprocess`` command that writes a plate's normalisation statistics for ``channels``."""
    return f"dynaclr preprocess --data_path {data_path} --channel_names '[{', '.join(channels)}]'"


# ---------------------------------------------------------------------------------------------- arguments
def _is_pair(value: Any, check) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(check(v) for v in value)


def _str_list_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def argument_problems(args: Mapping[str, Any]) -> CheckReport:
    """Range and type errors of :class:`~dynaclr.datamodule.MultiExperimentDataModule` arguments.

    The rules shared with other data modules are those of :mod:`viscy_data.checks`.

    Parameters
    ----------
    args : Mapping[str, Any]
        Argument name -> value (missing names are not checked).

    Returns
    -------
    CheckReport
        Errors keyed ``data.init_args.<name>``.
    """
    from dynaclr.experiment import well_name_problem

    report = CheckReport()

    def error(key: str, message: str | None) -> None:
        if message is not None:
            report.error(message, key=_PREFIX + key)

    if args.get("experiments_yaml") is not None and not isinstance(args["experiments_yaml"], (str, Path)):
        error(
            "experiments_yaml",
            f"experiments_yaml must be the path of an experiments file, got {args['experiments_yaml']!r}",
        )
    for key, minimum in (("batch_size", 1), ("num_workers", 0), ("cache_pool_bytes", 0)):
        if key in args:
            error(key, checks.integer_problem(key, args[key], minimum))
    if "z_range" in args:
        error("z_range", checks.z_range_problem(args["z_range"]))
    sizes_ok = True
    for key in ("yx_patch_size", "final_yx_patch_size"):
        if key in args and (message := checks.yx_size_problem(key, args[key])) is not None:
            error(key, message)
            sizes_ok = False
    if sizes_ok and "yx_patch_size" in args and "final_yx_patch_size" in args:
        error("final_yx_patch_size", checks.crop_problem(args["final_yx_patch_size"], args["yx_patch_size"]))
    tau = args.get("tau_range")
    if "tau_range" in args:
        if not _is_pair(tau, checks.is_finite_number):
            error("tau_range", f"tau_range must be [min, max] hours, got {tau!r}")
        elif tau[0] > tau[1]:
            error("tau_range", f"tau_range [{tau[0]}, {tau[1]}] has min > max")
    if "tau_decay_rate" in args and not checks.is_finite_number(args["tau_decay_rate"]):
        error("tau_decay_rate", f"tau_decay_rate must be a finite number, got {args['tau_decay_rate']!r}")
    for key, upper_open in (("leaky", True), ("temporal_global_fraction", False), ("channel_dropout_prob", False)):
        if key in args:
            error(key, checks.probability_problem(key, args[key], upper_open))
    window = args.get("temporal_window_hours")
    if "temporal_window_hours" in args and not (checks.is_finite_number(window) and window > 0):
        error("temporal_window_hours", f"temporal_window_hours must be > 0, got {window!r}")
    for key in ("experiment_weights", "condition_ratio"):
        weights = args.get(key)
        if weights is None:
            continue
        if not isinstance(weights, Mapping) or not all(checks.is_finite_number(v) for v in weights.values()):
            error(key, f"{key} must map names to finite numbers, got {weights!r}")
        elif any(v < 0 for v in weights.values()):
            error(key, f"{key} has negative weights: { {k: v for k, v in weights.items() if v < 0} }")
        elif weights and sum(weights.values()) <= 0:
            error(key, f"{key} gives every name weight 0: nothing could be drawn")
    channels = args.get("channel_dropout_channels")
    if channels is not None and not (
        isinstance(channels, (list, tuple)) and all(checks.is_integer(c) and c >= 0 for c in channels)
    ):
        error(
            "channel_dropout_channels",
            f"channel_dropout_channels must be a list of input positions >= 0, got {channels!r}",
        )
    for key in ("val_experiments", "predict_experiments", "include_wells", "exclude_fovs"):
        if key in args and not _str_list_or_none(args[key]):
            error(key, f"{key} must be a list of names, got {args[key]!r}")
    if _str_list_or_none(args.get("include_wells")):
        for why in filter(None, map(well_name_problem, args.get("include_wells") or [])):
            error("include_wells", why)
    return report


def _datamodule_arguments(dm: Any) -> dict[str, Any]:
    from dynaclr.datamodule import MultiExperimentDataModule

    names = [n for n in inspect.signature(MultiExperimentDataModule.__init__).parameters if n != "self"]
    return {n: getattr(dm, n) for n in names if hasattr(dm, n) and n not in _TRANSFORM_LISTS}


# ---------------------------------------------------------------------------------------------- data
@dataclass
class _Experiment:
    """What the plate and tracks pass found about one experiment."""

    cells_per_well: Counter = field(default_factory=Counter)
    plate_wells: set = field(default_factory=set)
    plate_fovs: set = field(default_factory=set)
    filtered_wells: set = field(default_factory=set)
    n_timepoints: int = 0
    n_fovs: int = 0
    n_with_meta: int = 0
    without_meta: list = field(default_factory=list)
    geometry: dict = field(default_factory=lambda: defaultdict(list))  # (key, message) -> FOVs
    meta_missing: dict = field(default_factory=lambda: defaultdict(list))  # (channel, message) -> FOVs
    no_csv: list = field(default_factory=list)  # FOVs
    no_rows: list = field(default_factory=list)  # FOVs
    dropped: dict = field(default_factory=dict)  # FOV -> FovTracks with rows the index leaves out


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence warnings of loggers whose content the report already carries."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _DataModuleCheck:
    def __init__(
        self,
        dm,
        stage: str,
        world_size: int,
        report: CheckReport,
        bad_keys: set[str],
        debug: bool = False,
        config_file: str | None = None,
    ) -> None:
        self.dm = dm
        self.config_file = config_file
        self.debug = debug
        self.stage = stage
        self.world_size = max(int(world_size), 1)
        self.report = report
        self.bad = bad_keys
        self.file = str(dm.experiments_yaml)
        self.all_names: list[str] = []  # every experiment name of the file, valid entries or not
        self.experiments: list = []  # ExperimentConfig that can be checked against their plates
        self.plate_ok: set[str] = set()
        self.tracks_ok: set[str] = set()
        self.zero_fill = False
        self.n_channels: int | None = None
        self.found: dict[str, _Experiment] = {}
        self.model: Any = None  # the model or the config's model section, compared with the data

    # ------------------------------------------------------------------ experiments file
    def load_experiments(self) -> None:
        from dynaclr.experiment import (
            ExperimentConfig,
            _is_str_list,
            entry_problems,
            experiment_problems,
            read_experiments_file,
        )

        try:
            entries, self.zero_fill = read_experiments_file(self.file)
        except ValueError as err:
            self.report.error(str(err), file=self.file, key=_PREFIX + "experiments_yaml")
            return
        configs, names = [], []
        for i, entry in enumerate(entries):
            problems = entry_problems(entry, i, self.file)
            self.report.extend(problems)
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                names.append(entry["name"])
            if not problems:
                configs.append(ExperimentConfig(**entry))
        self.all_names = names
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.report.error(
                f"experiment name used {names.count(name)} times; names must be unique",
                experiment=name,
                file=self.file,
                key="name",
            )
        for exp in configs:
            problems = experiment_problems(exp, self.zero_fill, self.file)
            self.report.extend(problems)
            blocked = {p.key for p in problems if p.severity == "error"}
            typed = _is_str_list(exp.channel_names) and _is_str_list(exp.source_channel)
            if typed and not blocked & {"data_path", "name"}:
                self.plate_ok.add(exp.name)
                if "tracks_path" not in blocked:
                    self.tracks_ok.add(exp.name)
        self.experiments = configs
        counts = {e.name: len(e.source_channel) for e in configs if isinstance(e.source_channel, (list, tuple))}
        if len(set(counts.values())) > 1:
            self.report.error(
                f"experiments have different numbers of source_channel entries {counts}: model inputs are aligned "
                "by position, so every experiment needs the same number",
                file=self.file,
                key="source_channel",
            )
        elif counts:
            self.n_channels = next(iter(counts.values()))

    # ------------------------------------------------------------------ names that refer to experiments
    def used_names(self) -> list[str]:
        names = [e.name for e in self.experiments]
        if self.stage == "predict":
            chosen = self.dm.predict_experiments
            return [n for n in names if n in set(chosen)] if chosen else names
        return names

    def check_references(self) -> None:
        known = set(self.all_names)
        dm = self.dm

        def unknown(key: str, values) -> None:
            missing = sorted(set(values or []) - known)
            if missing and key not in self.bad:
                self.config_error(f"{missing} are not experiments of {self.file} (has {self.all_names})", key)

        if self.stage == "predict":
            unknown("predict_experiments", dm.predict_experiments)
            return
        unknown("val_experiments", dm.val_experiments)
        if dm.experiment_weights is not None and "experiment_weights" not in self.bad:
            unknown("experiment_weights", dm.experiment_weights)
        if known and "val_experiments" not in self.bad and not known - set(dm.val_experiments or []):
            self.config_error(
                f"every experiment is in val_experiments {list(dm.val_experiments)}: none is left for training",
                "val_experiments",
            )

    def check_transforms(self) -> None:
        n = self.n_channels
        if n is None:
            return
        allowed = [f"ch_{i}" for i in range(n)]
        for list_name in _TRANSFORM_LISTS:
            for i, message in checks.transform_key_problems(getattr(self.dm, list_name), allowed, list_name):
                hint = " (ch_<i> is the i-th source_channel, whatever its name)"
                self.config_error(message + hint, f"{list_name}[{i}].init_args.keys")
        if "channel_dropout_channels" not in self.bad and self.stage == "fit":
            channels = self.dm.resolved_dropout_channels(n)
            message = checks.channel_positions_problem("channel_dropout_channels", channels, n)
            if message is not None:
                self.config_error(message, "channel_dropout_channels")

    def check_model(self) -> None:
        if self.model is None or "z_range" in self.bad:
            return
        for key, message in model_input_problems(self.model, self.n_channels, list(self.dm.z_range)):
            self.report.error(message, file=self.config_file, key=key)

    def norm_requirements(self) -> list[tuple[int, str, int, str, tuple[str, ...]]]:
        """(position, level, transform number, list name, statistics) read by every NormalizeSampled."""
        from viscy_transforms import NormalizeSampled

        needs = []
        for list_name in _TRANSFORM_LISTS:
            for i, transform in enumerate(getattr(self.dm, list_name)):
                if isinstance(transform, NormalizeSampled):
                    for key in transform.keys:
                        if str(key).startswith("ch_") and str(key)[3:].isdigit():
                            stats = (transform.subtrahend, transform.divisor)
                            needs.append((int(str(key)[3:]), transform.level, i, list_name, stats))
        return needs

    # ------------------------------------------------------------------ plates and tracks
    def check_plate(self, exp, needs) -> None:
        """Read every used FOV of an experiment (image shape, metadata, tracks) and report what is wrong."""
        from iohub.ngff import open_ome_zarr

        dm = self.dm
        found = self.found.setdefault(exp.name, _Experiment())
        include = None if "include_wells" in self.bad else dm.include_wells
        exclude = set(dm.exclude_fovs or []) if "exclude_fovs" not in self.bad else set()
        with open_ome_zarr(exp.data_path, layout="hcs", mode="r") as plate:
            for name, position in plate.positions():
                fov = name.strip("/")
                well = "/".join(fov.split("/")[:2])
                found.plate_wells.add(well)
                found.plate_fovs.add(fov)
                if (include is not None and well not in include) or fov in exclude:
                    found.filtered_wells.add(well)
                    continue
                self.scan_fov(exp, found, fov, well, position, needs)
        self.report_plate(exp, found)

    def scan_fov(self, exp, found: _Experiment, fov: str, well: str, position, needs) -> None:
        from dynaclr.index.tracks_csv import first_csv, read_tracks_csv
        from viscy_data.norm_meta import NORM_META_KEY

        found.n_fovs += 1
        shape = tuple(int(s) for s in position["0"].shape)
        found.n_timepoints = max(found.n_timepoints, shape[0])
        if not {"z_range", "yx_patch_size"} & self.bad:
            for key, message in checks.patch_fit_problems(shape, slice(*self.dm.z_range), self.dm.yx_patch_size):
                found.geometry[(key, message)].append(fov)
        raw = position.zattrs.get(NORM_META_KEY)
        if raw is None:
            found.without_meta.append(fov)
        else:
            found.n_with_meta += 1
            for position_index, level, _, _, stats in needs:
                channel = self.channel_name(exp, position_index)
                if channel is None:
                    continue
                if channel not in raw:
                    message = f"has no channel '{channel}' (has {sorted(raw)})"
                elif level not in raw[channel]:
                    message = f"has no '{level}' for channel '{channel}'"
                elif level != "timepoint_statistics" and any(s not in raw[channel][level] for s in stats):
                    message = f"has no statistics {[s for s in stats if s not in raw[channel][level]]} in '{level}'"
                else:
                    continue
                found.meta_missing[(channel, message)].append(fov)
        if exp.name not in self.tracks_ok:
            return
        csv = first_csv(Path(exp.tracks_path) / fov)
        if csv is None:
            found.no_csv.append(fov)
            return
        fov_tracks = read_tracks_csv(csv, (shape[0], shape[-2], shape[-1]))
        for message in fov_tracks.errors:
            self.report.error(message, experiment=exp.name, file=csv, key="tracks_path")
        if fov_tracks.table is None:
            return
        if fov_tracks.n_dropped:
            found.dropped[fov] = fov_tracks
        if len(fov_tracks.table) == 0:
            found.no_rows.append(fov)
        found.cells_per_well[well] += len(fov_tracks.table) - fov_tracks.n_dropped

    def report_plate(self, exp, found: _Experiment) -> None:
        from dynaclr.index.tracks_csv import describe_dropped_rows

        for (key, message), fovs in found.geometry.items():
            self.report.error(
                f"FOV{'s' * (len(fovs) > 1)} {_listed(fovs)}: {message}",
                experiment=exp.name,
                file=exp.data_path,
                key=_PREFIX + key,
            )
        for (channel, message), fovs in found.meta_missing.items():
            self.report.error(
                f"normalisation metadata of {len(fovs)} FOV(s) ({_listed(fovs)}) {message}, which NormalizeSampled "
                f"reads; write it with: {preprocess_command(exp.data_path, [channel])}",
                experiment=exp.name,
                file=exp.data_path,
                key=_PREFIX + "normalizations",
            )
        if found.n_fovs == 0:
            filters = f"include_wells {self.dm.include_wells}, exclude_fovs {self.dm.exclude_fovs}"
            message = f"no FOV of the plate is used ({filters})" if found.filtered_wells else "the plate has no FOV"
            self.report.error(message, experiment=exp.name, file=exp.data_path, key="data_path")
        if exp.name not in self.tracks_ok:
            return
        tracks_root = Path(exp.tracks_path)
        messages = []
        if found.n_fovs and len(found.no_csv) == found.n_fovs:
            self.report.error(
                f"no tracking CSV for any of the {found.n_fovs} FOVs (looked for "
                f"{tracks_root / found.no_csv[0]}/*.csv and the like)",
                experiment=exp.name,
                file=tracks_root,
                key="tracks_path",
            )
        elif found.no_csv:
            messages.append(
                f"{len(found.no_csv)} FOV(s) have no tracking CSV and are left out: {_listed(found.no_csv)}"
            )
        if found.no_rows:
            messages.append(f"{len(found.no_rows)} tracking CSV(s) have a header but no rows: {_listed(found.no_rows)}")
        if found.dropped:
            messages.append(describe_dropped_rows(found.dropped))
        for message in messages:
            self.report.warning(message, experiment=exp.name, file=tracks_root, key="tracks_path")

    def channel_name(self, exp, position_index: int) -> str | None:
        if position_index >= len(exp.source_channel):
            return None
        name = exp.source_channel[position_index]
        return name if name in exp.channel_names else None  # zero-filled channels need no statistics

    def check_norm_presence(self, needs) -> None:
        """FOVs without any normalisation metadata: an error when a transform reads it or a batch could mix."""
        used = [n for n in self.used_names() if n in self.found]
        with_meta = sum(self.found[n].n_with_meta for n in used)
        any_transform = any(getattr(self.dm, name) for name in _TRANSFORM_LISTS)
        exps = {e.name: e for e in self.experiments}
        for name in used:
            missing = self.found[name].without_meta
            if not missing:
                continue
            exp = exps[name]
            channels = [c for c in exp.source_channel if c in exp.channel_names]
            if needs:
                why = "NormalizeSampled reads it"
            elif any_transform and with_meta:
                why = "other FOVs have it, and a batch mixing FOVs with and without statistics cannot be normalised"
            else:
                continue
            self.report.error(
                f"{len(missing)} of {self.found[name].n_fovs} FOV(s) have no normalisation metadata "
                f"({_listed(missing)}) and {why}; write it with: {preprocess_command(exp.data_path, channels)}",
                experiment=name,
                file=exp.data_path,
                key=_PREFIX + "normalizations",
            )

    # ------------------------------------------------------------------ conditions
    def check_conditions(self) -> None:
        from dynaclr.experiment import well_name_problem

        all_conditions: set[str] = set()
        for exp in self.experiments:
            found = self.found.get(exp.name)
            if found is None or not isinstance(exp.condition_wells, dict):
                continue
            all_conditions.update(map(str, exp.condition_wells))
            assigned = set()
            for condition, wells in exp.condition_wells.items():
                if not isinstance(wells, (list, tuple)):
                    continue
                wells = [w for w in wells if well_name_problem(w) is None]
                assigned.update(wells)
                absent = [w for w in wells if w not in found.plate_wells]
                if absent:
                    self.report.error(
                        f"wells {absent} of condition '{condition}' are not in the plate (its wells: "
                        f"{_listed(sorted(found.plate_wells))})",
                        experiment=exp.name,
                        file=exp.data_path,
                        key=f"condition_wells.{condition}",
                    )
                if exp.name not in self.tracks_ok:
                    continue
                cells = sum(found.cells_per_well[w] for w in wells)
                if cells == 0 and wells and all(w in found.filtered_wells for w in wells if w in found.plate_wells):
                    if any(w in found.plate_wells for w in wells):
                        self.report.warning(
                            f"condition '{condition}' has no cells: include_wells/exclude_fovs leave out its "
                            f"wells {wells}",
                            experiment=exp.name,
                            file=self.file,
                            key=f"condition_wells.{condition}",
                        )
                elif cells == 0:
                    self.report.error(
                        f"condition '{condition}' has no cells: its wells {wells} hold no tracked cell inside "
                        "the images"
                        if wells
                        else f"condition '{condition}' lists no well",
                        experiment=exp.name,
                        file=self.file,
                        key=f"condition_wells.{condition}",
                    )
            if exp.name not in self.tracks_ok:
                continue
            orphans = sorted(w for w, n in found.cells_per_well.items() if n and w not in assigned)
            if orphans:
                n_cells = sum(found.cells_per_well[w] for w in orphans)
                self.report.warning(
                    f"{n_cells} observations in wells {_listed(orphans)} are in no condition of condition_wells and "
                    "get condition 'unknown'",
                    experiment=exp.name,
                    file=self.file,
                    key="condition_wells",
                )
            if sum(found.cells_per_well.values()) == 0 and found.n_fovs:
                self.report.error(
                    "no tracked cell inside the images in any used FOV",
                    experiment=exp.name,
                    file=exp.tracks_path,
                    key="tracks_path",
                )
        self.check_filters()
        ratio = self.dm.condition_ratio
        if ratio and "condition_ratio" not in self.bad and all_conditions and self.stage != "predict":
            unknown = sorted(set(ratio) - all_conditions)
            if unknown:
                self.config_error(
                    f"{unknown} are not conditions of any experiment (conditions: {sorted(all_conditions)})",
                    "condition_ratio",
                )

    def check_filters(self) -> None:
        """Warn about include_wells/exclude_fovs entries that match no plate (a typo selects or drops nothing)."""
        if len(self.found) < len(self.used_names()):
            return  # some plates were not read: their wells are unknown
        for key, values, attribute, noun in (
            ("include_wells", self.dm.include_wells, "plate_wells", "well"),
            ("exclude_fovs", self.dm.exclude_fovs, "plate_fovs", "FOV"),
        ):
            if key in self.bad or not values:
                continue
            known = sorted(set().union(*(getattr(f, attribute) for f in self.found.values())))
            absent = sorted(set(values) - set(known))
            if absent:
                self.report.warning(
                    f"{absent} match no {noun} of the used plates ({noun}s: {_listed(known)})",
                    file=self.config_file,
                    key=_PREFIX + key,
                )

    # ------------------------------------------------------------------ tau and the index
    def train_val_names(self) -> tuple[list[str], list[str]]:
        val = set(self.dm.val_experiments or [])
        names = [e.name for e in self.experiments]
        return [n for n in names if n not in val], [n for n in names if n in val]

    def check_tau(self) -> None:
        from dynaclr.experiment import hours_to_frames

        if self.stage == "predict" or "tau_range" in self.bad:
            return
        tau = tuple(self.dm.tau_range)
        exps = {e.name: e for e in self.experiments}
        train, val = self.train_val_names()
        unusable = {}
        for name in train + val:
            exp, found = exps[name], self.found.get(name)
            if not isinstance(exp.interval_minutes, (int, float)) or exp.interval_minutes <= 0 or found is None:
                continue
            lo, hi = hours_to_frames(tau, exp.interval_minutes)
            n_t = max(found.n_timepoints, 1)
            usable = [k for k in range(max(lo, -(n_t - 1)), min(hi, n_t - 1) + 1) if k != 0]
            if not usable:
                unusable[name] = f"{name}: {exp.interval_minutes:g} min/frame -> frames {lo}..{hi}, {n_t} timepoints"
        groups = [("validation", val)] if self.stage == "validate" else [("training", train), ("validation", val)]
        for group, names in groups:
            bad = [unusable[n] for n in names if n in unusable]
            if names and len(bad) == len(names):
                self.report.error(
                    f"tau_range {list(tau)} h gives no non-zero frame offset within the movies of any {group} "
                    f"experiment ({'; '.join(bad)}): widen tau_range",
                    file=self.file,
                    key=_PREFIX + "tau_range",
                )
            else:
                for n in names:
                    if n in unusable:
                        self.report.warning(
                            f"tau_range {list(tau)} h gives no usable frame offset ({unusable[n]}): this experiment "
                            "contributes no anchors",
                            experiment=n,
                            file=self.file,
                            key=_PREFIX + "tau_range",
                        )

    def check_index(self, keep_indices: bool) -> None:
        from dynaclr.experiment import ExperimentRegistry

        dm = self.dm
        exps = {e.name: e for e in self.experiments}

        def build(names: list[str]):
            registry = ExperimentRegistry([exps[n] for n in names], zero_fill_missing_channels=self.zero_fill)
            with _quiet("dynaclr.index", "dynaclr.experiment"):
                index = dm.build_index(registry, use_cache=keep_indices)
            if keep_indices:
                dm._prebuilt_indices[tuple(names)] = index
            return index

        if self.stage == "predict":
            names = self.used_names()
            index = build(names)
            if len(index.tracks) == 0:
                self.config_error(
                    f"the predicted experiments {names} have no observation to embed",
                    "predict_experiments",
                )
            self.report.notes.append(f"{len(names)} experiment(s), {len(index.tracks)} observations to embed")
            return
        train, val = self.train_val_names()
        index = build(train)  # setup builds the training index for validate too
        if self.stage == "fit":
            self.check_training_anchors(index, train)
        if val:
            val_index = build(val)
            if len(val_index.valid_anchors) == 0:
                self.config_error(
                    f"the validation experiments {val} have no valid anchor within tau_range {list(dm.tau_range)} h",
                    "val_experiments",
                )
            self.report.notes.append(f"{len(val)} validation experiment(s): {len(val_index.valid_anchors)} anchors")
        elif self.stage == "validate":
            self.config_error(
                "validate needs val_experiments: without them there is nothing to validate",
                "val_experiments",
            )

    def check_training_anchors(self, index, train: list[str]) -> None:
        dm = self.dm
        n_anchors = len(index.valid_anchors)
        per_exp = index.valid_anchors["experiment"].astype(str).value_counts() if n_anchors else {}
        tracks_paths = {e.name: e.tracks_path for e in self.experiments}
        for name in train:
            if n_anchors and not per_exp.get(name, 0):
                self.report.warning(
                    f"no valid anchor: no cell has a later observation of its lineage within tau_range "
                    f"{list(dm.tau_range)} h",
                    experiment=name,
                    file=tracks_paths[name],
                    key=_PREFIX + "tau_range",
                )
        if n_anchors == 0:
            self.report.error(
                f"no training anchor: no cell of {train} has a later observation of its lineage within tau_range "
                f"{list(dm.tau_range)} h (tracks too short or too gappy for this range)",
                file=self.file,
                key=_PREFIX + "tau_range",
            )
        elif "batch_size" not in self.bad:
            message = checks.anchors_problem(n_anchors, dm.batch_size, self.world_size, "the training experiments")
            if message is not None:
                self.config_error(message, "batch_size")
        note = f"{len(train)} training experiment(s): {len(index.tracks)} observations, {n_anchors} anchors"
        if "batch_size" not in self.bad and dm.batch_size:
            note += f", {n_anchors // dm.batch_size // self.world_size} batches of {dm.batch_size} per epoch"
            if self.world_size > 1:
                note += " per process"
        self.report.notes.append(note)

    def run(self, keep_indices: bool) -> None:
        with self.unexpected("cannot read the experiments", None, self.file):
            self.load_experiments()
            self.check_references()
            self.check_transforms()
            self.check_model()
        needs = self.norm_requirements()
        for exp in self.experiments:
            if exp.name in self.used_names() and exp.name in self.plate_ok:
                with self.unexpected("cannot check the plate and its tracks", exp.name, exp.data_path):
                    self.check_plate(exp, needs)
        with self.unexpected("cannot check normalisation metadata, conditions and tau_range", None, self.file):
            self.check_norm_presence(needs)
            self.check_conditions()
            self.check_tau()
        if self.report.ok and self.experiments:
            with self.unexpected("cannot build the index of observations", None, self.file):
                self.check_index(keep_indices)

    def config_error(self, message: str, key: str) -> None:
        """Report an error of the data module argument ``key`` (named with the config file, when known)."""
        self.report.error(message, file=self.config_file, key=_PREFIX + key)

    @contextmanager
    def unexpected(self, what: str, experiment: str | None, file) -> Iterator[None]:
        """Turn an unforeseen failure into an error naming its place (re-raised with ``--debug``)."""
        try:
            yield
        except Exception as err:
            if self.debug:
                raise
            self.report.error(f"{what} ({type(err).__name__}: {err})", experiment=experiment, file=file)


def _model_inputs(model: Any) -> tuple[int | None, int | None, str]:
    """``(in_channels, in_stack_depth, key)`` a model expects, from an ``nn.Module`` or a ``model`` config section.

    A module: the first submodule with an ``in_stack_depth`` attribute and the first 3D convolution inside it (the
    stem). A config mapping: the first ``init_args`` (the model's or a nested one, e.g. the encoder's) naming
    ``in_channels`` or ``in_stack_depth``. Unknown values are None.
    """
    if isinstance(model, Mapping):
        stack = [(model, "model")]
        while stack:
            node, key = stack.pop(0)
            init_args = node.get("init_args") if isinstance(node.get("init_args"), Mapping) else {}
            if "in_channels" in init_args or "in_stack_depth" in init_args:
                found = [init_args.get(k) for k in ("in_channels", "in_stack_depth")]
                return *(v if checks.is_integer(v) else None for v in found), f"{key}.init_args"
            stack += [(v, f"{key}.init_args.{k}") for k, v in init_args.items() if isinstance(v, Mapping)]
        return None, None, "model"
    import torch

    for module in model.modules() if isinstance(model, torch.nn.Module) else ():
        depth = getattr(module, "in_stack_depth", None)
        if checks.is_integer(depth):
            conv = next((m for m in module.modules() if isinstance(m, torch.nn.Conv3d)), None)
            return (None if conv is None else conv.in_channels), int(depth), "model"
    return None, None, "model"


def model_input_problems(model: Any, n_channels: int | None, z_range: Any) -> list[tuple[str, str]]:
    """Model inputs that disagree with the data: ``in_channels`` vs source channels, ``in_stack_depth`` vs ``z_range``.

    Parameters
    ----------
    model : torch.nn.Module or Mapping
        The model, or the ``model`` section of a config.
    n_channels : int or None
        Source channels of the experiments (None: unknown, not compared).
    z_range : sequence of int
        ``[start, stop]`` Z planes read.

    Returns
    -------
    list[tuple[str, str]]
        ``(key, message)`` pairs; empty when they agree or the model's inputs are unknown.
    """
    in_channels, depth, key = _model_inputs(model)
    out = []
    if in_channels is not None and n_channels is not None and in_channels != n_channels:
        out.append(
            (
                f"{key}.in_channels",
                f"the model takes in_channels={in_channels}, but the experiments have {n_channels} source channel(s) "
                "(source_channel in the experiments file): make them equal",
            )
        )
    if depth is not None and checks.z_range_problem(z_range) is None and depth != z_range[1] - z_range[0]:
        out.append(
            (
                f"{key}.in_stack_depth",
                f"the model takes in_stack_depth={depth}, but z_range {list(z_range)} reads {z_range[1] - z_range[0]} "
                f"Z plane(s): set z_range to {depth} planes or in_stack_depth to {z_range[1] - z_range[0]}",
            )
        )
    return out


def check_datamodule(
    dm: Any,
    stage: str = "fit",
    world_size: int = 1,
    *,
    keep_indices: bool = False,
    report: CheckReport | None = None,
    bad_keys: set[str] | None = None,
    debug: bool = False,
    config_file: str | Path | None = None,
    model: Any = None,
) -> CheckReport:
    """Check a :class:`~dynaclr.datamodule.MultiExperimentDataModule` and every experiment it names.

    Parameters
    ----------
    dm : MultiExperimentDataModule
        The data module (not set up).
    stage : str
        ``"fit"``, ``"validate"`` or ``"predict"``; other stages only get the argument checks.
    world_size : int
        Processes sharing the training batches (each needs at least one batch per epoch).
    keep_indices : bool
        Keep the indices built by the check in the data module (read/written through ``index_cache_dir``) for
        its ``setup``; False builds them without the cache and writes nothing.
    report : CheckReport, optional
        Add to this report (whose argument problems were already found, see ``bad_keys``) instead of a new one.
    bad_keys : set[str], optional
        Arguments already reported as wrong: their range checks are skipped and checks that depend on them too.
        When None, the arguments are read from ``dm`` and checked here.
    debug : bool
        Let unexpected exceptions propagate (with their traceback) instead of reporting them as errors.
    config_file : str or Path, optional
        The config the data module comes from, named in the problems of its arguments.
    model : torch.nn.Module or Mapping, optional
        The model (or the config's ``model`` section): its ``in_channels`` and ``in_stack_depth`` are compared with
        the source channels and ``z_range`` (see :func:`model_input_problems`).

    Returns
    -------
    CheckReport
        Every problem found.
    """
    report = report if report is not None else CheckReport()
    if bad_keys is None:
        found = argument_problems(_datamodule_arguments(dm))
        report.extend(found.problems)
        bad_keys = {p.key.removeprefix(_PREFIX) for p in found.problems if p.key}
    if stage in _CHECKED_STAGES:
        config_file = None if config_file is None else str(config_file)
        checker = _DataModuleCheck(dm, stage, world_size, report, bad_keys, debug, config_file)
        checker.model = model
        checker.run(keep_indices)
    return report


# ---------------------------------------------------------------------------------------------- config files
def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    if not module:
        raise ImportError(f"'{class_path}' is not a dotted class path")
    return getattr(importlib.import_module(module), name)


def _instantiate(config: Any) -> Any:
    """Instantiate a ``{class_path, init_args}`` mapping (nested ones first), as the Lightning CLI does."""
    if isinstance(config, Mapping) and "class_path" in config:
        cls = _import_class(str(config["class_path"]))
        init_args = {k: _instantiate(v) for k, v in (config.get("init_args") or {}).items()}
        return cls(**init_args)
    if isinstance(config, list):
        return [_instantiate(v) for v in config]
    return config


def _infer_stage(config: Mapping) -> str:
    """``predict`` for a config with ``return_predictions`` or a prediction-writer callback, else ``fit``."""
    if "return_predictions" in config:
        return "predict"
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else []:
        class_path = str(callback.get("class_path", "")) if isinstance(callback, Mapping) else ""
        if class_path.endswith(("EmbeddingWriter", "PredictionWriter")):
            return "predict"
    return "fit"


def _world_size(config: Mapping) -> int:
    trainer = config.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    if not (checks.is_integer(devices) and devices > 0):
        devices = 1  # "auto", -1: only known on the machine that runs
    return int(devices) * (int(nodes) if checks.is_integer(nodes) and nodes > 0 else 1)


def check_config(path: str | Path, stage: str = "auto", debug: bool = False) -> CheckReport:
    """Check a Lightning config file (``trainer``/``model``/``data`` sections) whose data module is multi-experiment.

    Parameters
    ----------
    path : str or Path
        The config, as given to ``dynaclr fit -c``.
    stage : str
        ``"fit"``, ``"validate"``, ``"predict"`` or ``"auto"`` (``predict`` when the config has
        ``return_predictions`` or an embedding/prediction writer callback).
    debug : bool
        Let unexpected exceptions propagate instead of reporting them.

    Returns
    -------
    CheckReport
        Every problem found; relative paths in the config are resolved from the working directory, as
        ``dynaclr fit`` does.
    """
    from dynaclr.datamodule import MultiExperimentDataModule

    path = Path(path)
    report = CheckReport(source=str(path))
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        report.error(f"cannot read the config ({type(err).__name__}: {err})", file=path)
        return report
    except yaml.YAMLError as err:
        report.error(f"not valid YAML ({yaml_error_text(err)})", file=path)
        return report
    if not isinstance(config, Mapping) or not isinstance(config.get("data"), Mapping):
        report.error("no 'data' section: pass the config given to dynaclr fit/predict", file=path, key="data")
        return report
    stage = _infer_stage(config) if stage == "auto" else stage
    data = config["data"]
    class_path = str(data.get("class_path", ""))
    try:
        cls = _import_class(class_path)
    except (ImportError, AttributeError) as err:
        report.error(f"cannot import '{class_path}' ({err})", file=path, key="data.class_path")
        return report
    if not (isinstance(cls, type) and issubclass(cls, MultiExperimentDataModule)):
        report.warning(
            f"{class_path} is not a MultiExperimentDataModule: only its configuration parses, nothing else is checked",
            file=path,
            key="data.class_path",
        )
        return report
    init_args = dict(data.get("init_args") or {})
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in [] if takes_any else sorted(set(init_args) - set(parameters)):
        close = difflib.get_close_matches(key, [k for k in parameters if k != "self"], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; arguments: {sorted(set(parameters) - {'self'})}"
        report.error(f"unknown argument of {cls.__name__}{hint}", file=path, key=_PREFIX + key)
        init_args.pop(key)
    if init_args.get("experiments_yaml") is None and init_args.get("experiments_file") is not None:
        init_args["experiments_yaml"] = init_args.pop("experiments_file")
    if init_args.get("experiments_yaml") is None:
        report.error("the experiments file is not given", file=path, key=_PREFIX + "experiments_yaml")
        return report
    defaults = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    found = argument_problems({**defaults, **init_args})
    for problem in found.problems:
        report.error(problem.message, file=path, key=problem.key)
    bad = {p.key.removeprefix(_PREFIX) for p in found.problems if p.key}
    transforms = {}
    for list_name in _TRANSFORM_LISTS:
        built = []
        for i, item in enumerate(init_args.pop(list_name, None) or []):
            try:
                built.append(_instantiate(item))
            except Exception as err:  # the transform's own validation: report it with its place in the config
                report.error(f"{type(err).__name__}: {err}", file=path, key=f"{_PREFIX}{list_name}[{i}]")
        transforms[list_name] = built
    kwargs = {k: v for k, v in init_args.items() if k not in bad}
    try:
        dm = cls(**kwargs, **transforms)
    except Exception as err:
        report.error(f"cannot build {cls.__name__} ({type(err).__name__}: {err})", file=path, key="data.init_args")
        return report
    model = config.get("model") if isinstance(config.get("model"), Mapping) else None
    return check_datamodule(
        dm,
        stage,
        world_size=_world_size(config),
        report=report,
        bad_keys=bad,
        debug=debug,
        config_file=path,
        model=model,
    )


# ---------------------------------------------------------------------------------------------- command
@click.command(
    "check",
    short_help="Check a config and every experiment it names before training: dynaclr check -c fit.yml",
)
@click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The fit/predict config."
)
@click.option(
    "--stage",
    type=click.Choice(["auto", *_CHECKED_STAGES]),
    default="auto",
    show_default=True,
    help="What the config is for; auto: predict when it has return_predictions or an embedding writer.",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected failure.")
def check_command(config_path: str, stage: str, debug: bool) -> None:
    """Check a config and every experiment it names; report all problems at once.

    Opens every experiment's plate and tracking CSVs and checks what `dynaclr fit`/`predict` would otherwise
    discover late or not at all. Exit status: 0 when there is no error (warnings allowed), 1 otherwise.
    `dynaclr fit`/`validate`/`predict` run the same checks before writing anything.
    """
    try:
        report = check_config(config_path, stage, debug=debug)
    except Exception as err:
        if debug:
            raise
        click.echo(f"error: {type(err).__name__}: {err} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    click.echo(report.format())
    sys.exit(1 if report.errors else 0)
