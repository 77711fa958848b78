"""Rules for the arguments of a multi-experiment data module and for the model the data feeds."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynaclr.problems import CheckReport
from viscy_data import checks

__all__ = ["argument_problems", "model_input_problems"]

_PREFIX = "data.init_args."
_TRANSFORM_LISTS = ("normalizations", "augmentations")


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
    required = {
        "z_range": "[start, stop] Z planes",
        "yx_patch_size": "[height, width] of the patch read around each cell",
        "final_yx_patch_size": "[height, width] after the centre crop",
    }
    for key, what in required.items():
        if key in args and args[key] is None:
            error(key, f"{key} is required: {what}")
    if args.get("z_range") is not None:
        error("z_range", checks.z_range_problem(args["z_range"]))
    sizes_ok = all(args.get(key) is not None for key in ("yx_patch_size", "final_yx_patch_size"))
    for key in ("yx_patch_size", "final_yx_patch_size"):
        if args.get(key) is not None and (message := checks.yx_size_problem(key, args[key])) is not None:
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
