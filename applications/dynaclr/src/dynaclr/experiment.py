"""Experiment descriptions and their registry for multi-experiment contrastive training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

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
        if exp.interval_minutes <= 0:
            raise ValueError(f"Experiment '{exp.name}': interval_minutes must be > 0, got {exp.interval_minutes}")
        if not exp.condition_wells:
            raise ValueError(f"Experiment '{exp.name}': condition_wells is empty")
        missing = [ch for ch in exp.source_channel if ch not in exp.channel_names]
        if missing and not self.zero_fill_missing_channels:
            raise ValueError(
                f"Experiment '{exp.name}': source_channel entries {missing} are not in "
                f"channel_names {exp.channel_names} (set zero_fill_missing_channels to read them as zeros)"
            )
        if missing:
            _logger.warning("Experiment '%s': source channels %s are absent and read as zeros", exp.name, missing)
        if not Path(exp.data_path).exists():
            raise ValueError(f"Experiment '{exp.name}': data_path does not exist: {exp.data_path}")
        actual = _plate_channel_names(exp.data_path)
        if actual != list(exp.channel_names):
            raise ValueError(
                f"Experiment '{exp.name}': channel_names {list(exp.channel_names)} (expected) do not match "
                f"the plate's channels {actual} (actual) in {exp.data_path}"
            )

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
            If an experiment has keys that are not :class:`ExperimentConfig` fields.
        ValueError
            If the file has no ``experiments`` list, or on any registry validation error.
        """
        with open(path) as f:
            content = yaml.safe_load(f) or {}
        entries = content.get("experiments") if isinstance(content, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a top-level 'experiments' list")
        allowed = {f.name for f in fields(ExperimentConfig)}
        experiments = []
        for entry in entries:
            unknown = sorted(set(entry) - allowed)
            if unknown:
                raise TypeError(f"{path}: experiment {entry.get('name', '?')!r} has unknown keys {unknown}")
            experiments.append(ExperimentConfig(**entry))
        return cls(experiments, zero_fill_missing_channels=bool(content.get("zero_fill_missing_channels", False)))

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
        interval = self.get_experiment(experiment_name).interval_minutes
        tau_min = round(tau_range_hours[0] * 60 / interval)
        tau_max = round(tau_range_hours[1] * 60 / interval)
        if tau_min >= tau_max:
            _logger.warning(
                "Experiment '%s': tau range %s h gives frames (%d, %d), fewer than 2 valid frames",
                experiment_name,
                tuple(tau_range_hours),
                tau_min,
                tau_max,
            )
        return tau_min, tau_max
