"""Checks of ``tau_range`` and of the anchors of the index a run would build."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dynaclr.check.arguments import _PREFIX
from viscy_data import checks


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


class _AnchorChecks:
    """Checks that need the index: ``tau_range`` against the movies, anchors against ``batch_size``."""

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
