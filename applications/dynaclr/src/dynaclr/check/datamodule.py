"""Check a multi-experiment data module and every experiment it names: :func:`check_datamodule`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dynaclr.check.anchors import _AnchorChecks
from dynaclr.check.arguments import (
    _PREFIX,
    _TRANSFORM_LISTS,
    _datamodule_arguments,
    argument_problems,
    model_input_problems,
)
from dynaclr.check.conditions import _ConditionChecks
from dynaclr.check.plates import _Experiment, _PlateChecks
from dynaclr.problems import CheckReport
from viscy_data import checks

__all__ = ["check_datamodule"]

_CHECKED_STAGES = ("fit", "validate", "predict")


class _DataModuleCheck(_PlateChecks, _ConditionChecks, _AnchorChecks):
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
