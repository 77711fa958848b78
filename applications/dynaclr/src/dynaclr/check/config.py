"""Check a Lightning config file whose data module is multi-experiment: :func:`check_config`."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dynaclr.check.arguments import _PREFIX, _TRANSFORM_LISTS, argument_problems
from dynaclr.check.datamodule import check_datamodule
from dynaclr.problems import CheckReport, yaml_error_text
from viscy_data import checks

__all__ = ["check_config"]


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
    if any(k not in kwargs or kwargs[k] is None for k in ("z_range", "yx_patch_size", "final_yx_patch_size")):
        return report  # required geometry missing or invalid (reported above): the data module cannot be built
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
