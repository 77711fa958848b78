"""Experiment descriptions and their registry for multi-experiment contrastive training."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import yaml

from dynaclr.problems import Problem, yaml_error_text

__all__ = ["ExperimentConfig", "ExperimentRegistry"]

_logger = logging.getLogger(__name__)


@dataclass
class ExperimentConfig:
    """One time-lapse experiment: an HCS OME-Zarr plate, its tracks and its conditions.

    Parameters
    ----------
    name : str
        Unique experiment identifier.
    data_path : str
        Path of the HCS OME-Zarr plate.
    tracks_path : str
        Root of the per-FOV tracking CSVs (``<tracks_path>/<row>/<col>/<fov>/*.csv``).
    channel_names : list[str]
        All channels of the plate, in zarr order.
    source_channel : list[str]
        Channels used for training, in model-input order; aligned by position across experiments.
    condition_wells : dict[str, list[str]]
        Condition label -> wells (``"A/1"``); one condition per well.
    interval_minutes : float
        Time between frames.
    start_hpi : float
        Hours post infection at frame 0.
    organelle, date : str
        Descriptive metadata.
    moi : float
        Multiplicity of infection.
    """

    name: str
    data_path: str
    tracks_path: str
    channel_names: list[str]
    source_channel: list[str]
    condition_wells: dict[str, list[str]]
    interval_minutes: float = 30.0
    start_hpi: float = 0.0
    organelle: str = ""
    date: str = ""
    moi: float = 0.0


def _plate_channel_names(data_path: str) -> list[str]:
    """Channel names of the first position of a plate."""
    from iohub.ngff import open_ome_zarr

    with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
        for _, position in plate.positions():
            return list(position.channel_names)
        return list(plate.channel_names)


def hours_to_frames(tau_range_hours: tuple[float, float], interval_minutes: float) -> tuple[int, int]:
    """Convert an offset range in hours to frames: ``(round(min * 60 / interval), round(max * 60 / interval))``."""
    return round(tau_range_hours[0] * 60 / interval_minutes), round(tau_range_hours[1] * 60 / interval_minutes)


#: ExperimentConfig fields without a default: an experiments file must give them
REQUIRED_FIELDS = tuple(f.name for f in fields(ExperimentConfig) if f.default is MISSING)

_LETTERS_DIGITS = re.compile(r"^([A-Za-z]+)(\d+)$")


def well_name_problem(well: object) -> str | None:
    """Why ``well`` is not a well name of the form ``"<row>/<col>"`` (e.g. ``"A/1"``), or None if it is.

    Parameters
    ----------
    well : object
        A value from ``condition_wells`` or ``include_wells``.

    Returns
    -------
    str or None
        A sentence saying what is wrong and what to write instead.
    """
    if not isinstance(well, str):
        return f"well {well!r} is a {type(well).__name__}, not a string like 'A/1'"
    parts = well.strip("/").split("/")
    if len(parts) == 2 and all(parts) and not any(ch.isspace() for ch in well):
        return None
    match = _LETTERS_DIGITS.match(well)
    if match:
        return f"well '{well}' is not in row/col form: write '{match[1]}/{match[2]}'"
    if len(parts) == 3:
        return f"'{well}' names a FOV, not a well: write the well '{parts[0]}/{parts[1]}'"
    return f"well '{well}' is not in row/col form (e.g. 'A/1')"


def _is_str_list(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def entry_problems(entry: object, position: int, file: str | Path | None = None) -> list[Problem]:
    """Problems of one raw entry of an experiments file: not a mapping, missing or unknown keys.

    Parameters
    ----------
    entry : object
        The parsed YAML entry.
    position : int
        Its position in the ``experiments`` list (named in the messages when the entry has no name).
    file : str or Path, optional
        The experiments file.

    Returns
    -------
    list[Problem]
        Errors keyed ``experiments[<position>].<field>``.
    """
    file = None if file is None else str(file)
    if not isinstance(entry, dict):
        return [
            Problem(
                "error",
                f"expected a mapping of experiment fields, got {type(entry).__name__} {entry!r}",
                file=file,
                key=f"experiments[{position}]",
            )
        ]
    name = entry.get("name")
    label = name if isinstance(name, str) else None
    problems = []
    missing = [k for k in REQUIRED_FIELDS if k not in entry]
    if missing:
        problems.append(
            Problem(
                "error",
                f"missing required key(s) {missing}" + ("" if label else f" (entry number {position + 1})"),
                experiment=label,
                file=file,
                key=f"experiments[{position}]." + missing[0],
            )
        )
    allowed = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(map(str, entry)) - allowed)
    if unknown:
        problems.append(
            Problem(
                "error",
                f"unknown key(s) {unknown}; allowed: {sorted(allowed)}",
                experiment=label,
                file=file,
                key=f"experiments[{position}].{unknown[0]}",
            )
        )
    return problems


def experiment_problems(
    exp: ExperimentConfig, zero_fill_missing_channels: bool = False, file: str | Path | None = None
) -> list[Problem]:
    """Every problem of one experiment that needs no tracks: types, wells, channels, paths, plate channels.

    Used by :class:`ExperimentRegistry` (which raises on the errors) and by :mod:`dynaclr.check` (which
    reports them all).

    Parameters
    ----------
    exp : ExperimentConfig
        The experiment.
    zero_fill_missing_channels : bool
        Whether source channels absent from ``channel_names`` are allowed (a warning then).
    file : str or Path, optional
        The experiments file the experiment comes from (named in the problems).

    Returns
    -------
    list[Problem]
        Errors and warnings, in the order of the registry's validation.
    """
    file = None if file is None else str(file)
    out: list[Problem] = []

    def add(message: str, key: str, severity: str = "error", where: str | None = file) -> None:
        out.append(Problem(severity, message, experiment=str(exp.name), file=where, key=key))

    if not isinstance(exp.name, str) or not exp.name:
        add(f"name must be a non-empty string, got {exp.name!r}", "name")
    interval = exp.interval_minutes
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        add(f"interval_minutes must be a number, got {interval!r}", "interval_minutes")
    elif not interval > 0:
        add(f"interval_minutes must be > 0, got {interval}", "interval_minutes")
    for key in ("start_hpi", "moi"):
        value = getattr(exp, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            add(f"{key} must be a number, got {value!r}", key)
    wells = exp.condition_wells
    if not isinstance(wells, dict):
        add(f"condition_wells must map condition -> list of wells, got {wells!r}", "condition_wells")
    elif not wells:
        add(
            "condition_wells is empty: give at least one condition and its wells (e.g. {infected: [B/1]})",
            "condition_wells",
        )
    else:
        owner: dict[str, str] = {}
        for condition, listed in wells.items():
            key = f"condition_wells.{condition}"
            if not isinstance(listed, (list, tuple)):
                add(f"expected a list of wells, got {listed!r}", key)
                continue
            for well in listed:
                why = well_name_problem(well)
                if why is not None:
                    add(why, key)
                elif well in owner and owner[well] != condition:
                    add(
                        f"well '{well}' is listed under conditions '{owner[well]}' and '{condition}' "
                        "(one condition per well)",
                        key,
                    )
                else:
                    owner[well] = condition
        if all(isinstance(v, (list, tuple)) and not v for v in wells.values()):
            add(
                f"every condition has an empty well list ({sorted(map(str, wells))}): no cell would get a condition",
                "condition_wells",
            )
    names_ok = _is_str_list(exp.channel_names)
    if not names_ok:
        add(f"channel_names must be a list of channel names, got {exp.channel_names!r}", "channel_names")
    if not _is_str_list(exp.source_channel) or not exp.source_channel:
        add(f"source_channel must be a non-empty list of channel names, got {exp.source_channel!r}", "source_channel")
    elif names_ok:
        missing = [ch for ch in exp.source_channel if ch not in exp.channel_names]
        if missing and not zero_fill_missing_channels:
            add(
                f"source_channel entries {missing} are not in channel_names {list(exp.channel_names)} "
                "(set zero_fill_missing_channels to read them as zeros)",
                "source_channel",
            )
        elif missing:
            add(f"source channels {missing} are absent and read as zeros", "source_channel", "warning")
    for key in ("data_path", "tracks_path"):
        if not isinstance(getattr(exp, key), (str, os.PathLike)):
            add(f"{key} must be a path, got {getattr(exp, key)!r}", key)
    if not isinstance(exp.data_path, (str, os.PathLike)):
        return out
    if not Path(exp.data_path).exists():
        add(f"data_path does not exist: {exp.data_path}", "data_path")
        return out
    if isinstance(exp.tracks_path, (str, os.PathLike)) and not Path(exp.tracks_path).is_dir():
        add(
            f"tracks_path is not a directory: {exp.tracks_path} (expected <tracks_path>/<row>/<col>/<fov>/*.csv)",
            "tracks_path",
        )
    try:
        actual = _plate_channel_names(exp.data_path)
    except Exception as err:  # not a plate, unreadable metadata: name the store, keep the cause
        add(
            f"cannot open {exp.data_path} as an HCS OME-Zarr plate ({type(err).__name__}: {err})",
            "data_path",
            where=str(exp.data_path),
        )
        return out
    if names_ok and actual != list(exp.channel_names):
        add(
            f"channel_names {list(exp.channel_names)} (expected) do not match the plate's channels {actual} (actual)",
            "channel_names",
            where=str(exp.data_path),
        )
    return out


def read_experiments_file(path: str | Path) -> tuple[list, bool]:
    """Read the raw ``experiments`` entries of an experiments file and its ``zero_fill_missing_channels`` flag.

    Parameters
    ----------
    path : str or Path
        The experiments YAML.

    Returns
    -------
    tuple[list, bool]
        The entries (unvalidated, see :func:`entry_problems`) and the flag.

    Raises
    ------
    ValueError
        If the file does not exist, is not valid YAML or has no top-level ``experiments`` list.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"experiments file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({yaml_error_text(err)})") from None
    entries = content.get("experiments") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a top-level 'experiments' list with at least one experiment")
    return entries, bool(content.get("zero_fill_missing_channels", False))


@dataclass
class ExperimentRegistry:
    """Validated collection of experiments sharing one model-input channel layout.

    Parameters
    ----------
    experiments : list[ExperimentConfig]
        The experiments; names must be unique.
    zero_fill_missing_channels : bool
        When False (default) every ``source_channel`` entry must be a plate channel. When True, a
        source channel absent from an experiment's ``channel_names`` is allowed: that position is
        left out of the experiment's channel map and read as zeros.

    Attributes
    ----------
    num_source_channels : int
        The number of model-input channels (common ``len(source_channel)``).
    channel_maps : dict[str, dict[int, int]]
        Experiment name -> {source position -> zarr channel index}; zero-filled positions are absent.

    Raises
    ------
    ValueError
        On an empty list, duplicate names, a non-positive interval, empty ``condition_wells``, a
        missing source channel, a missing plate, plate channels that differ from ``channel_names``,
        or different numbers of source channels.
    """

    experiments: list[ExperimentConfig]
    zero_fill_missing_channels: bool = False
    num_source_channels: int = field(init=False)
    channel_maps: dict[str, dict[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        if not self.experiments:
            raise ValueError("Empty experiment list: ExperimentRegistry needs at least one experiment")
        names = [exp.name for exp in self.experiments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Duplicate experiment names: {duplicates}")
        for exp in self.experiments:
            self._validate(exp)
        counts = {exp.name: len(exp.source_channel) for exp in self.experiments}
        if len(set(counts.values())) > 1:
            raise ValueError(f"All experiments need the same number of source_channel entries, got {counts}")
        self.num_source_channels = next(iter(counts.values()))
        self.channel_maps = {
            exp.name: {
                i: exp.channel_names.index(ch) for i, ch in enumerate(exp.source_channel) if ch in exp.channel_names
            }
            for exp in self.experiments
        }
        self._by_name = {exp.name: exp for exp in self.experiments}

    def _validate(self, exp: ExperimentConfig) -> None:
        problems = experiment_problems(exp, self.zero_fill_missing_channels)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ValueError("\n".join(f"Experiment '{exp.name}': {p.key}: {p.message}" for p in errors))
        for problem in problems:
            _logger.warning("Experiment '%s': %s", exp.name, problem.message)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentRegistry:
        """Load a registry from an experiments YAML file.

        Parameters
        ----------
        path : str or Path
            YAML with a top-level ``experiments`` list of mappings whose keys are
            :class:`ExperimentConfig` fields, and optionally ``zero_fill_missing_channels: true``.

        Returns
        -------
        ExperimentRegistry

        Raises
        ------
        TypeError
            If an experiment has keys that are not :class:`ExperimentConfig` fields, lacks a required one
            or is not a mapping (every such entry is named, with the file).
        ValueError
            If the file is missing, is not YAML or has no ``experiments`` list, or on any registry validation
            error (the message names the file).
        """
        entries, zero_fill = read_experiments_file(path)
        key_problems = [p for i, entry in enumerate(entries) for p in entry_problems(entry, i, path)]
        if key_problems:
            raise TypeError("\n".join(p.describe() for p in key_problems))
        try:
            return cls([ExperimentConfig(**entry) for entry in entries], zero_fill_missing_channels=zero_fill)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def get_experiment(self, name: str) -> ExperimentConfig:
        """Return the experiment called ``name``.

        Raises
        ------
        KeyError
            If no experiment has that name (the message lists the available ones).
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"Unknown experiment '{name}'; available: {sorted(self._by_name)}") from None

    def tau_range_frames(self, experiment_name: str, tau_range_hours: tuple[float, float]) -> tuple[int, int]:
        """Convert a range of temporal offsets from hours to frames of one experiment.

        Parameters
        ----------
        experiment_name : str
            Experiment whose ``interval_minutes`` is used.
        tau_range_hours : tuple[float, float]
            (min, max) offset in hours.

        Returns
        -------
        tuple[int, int]
            ``(round(min * 60 / interval), round(max * 60 / interval))`` (Python rounding). A warning
            mentioning "fewer than 2 valid frames" is logged when min >= max.
        """
        tau_min, tau_max = hours_to_frames(tau_range_hours, self.get_experiment(experiment_name).interval_minutes)
        if tau_min >= tau_max:
            _logger.warning(
                "Experiment '%s': tau range %s h gives frames (%d, %d), fewer than 2 valid frames",
                experiment_name,
                tuple(tau_range_hours),
                tau_min,
                tau_max,
            )
        return tau_min, tau_max
