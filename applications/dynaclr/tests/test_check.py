"""``dynaclr check`` and the pre-flight of fit/predict: every bad input is reported, naming its culprit.

Each case of ``CASES`` starts from a good configuration over two small synthetic experiments (T 6, Z 3,
64 x 64, four wells), breaks one thing, and asserts that one reported problem has the expected severity and
names the experiment, the file and the configuration key concerned, plus the words that say what to do.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dynaclr.check import argument_problems, check_config, check_datamodule
from dynaclr.cli import dynaclr as dynaclr_group
from dynaclr.datamodule import MultiExperimentDataModule
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from dynaclr.problems import CheckReport, ConfigCheckError, Problem
from viscy_data.synthetic import write_synthetic_plate

EXPERIMENTS = ("exp_a", "exp_b")
WELLS = {"uninfected": ["A/1", "A/2"], "infected": ["B/1", "B/2"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Two synthetic experiments, written once; every test works on its own copy."""
    return write_template(tmp_path_factory.mktemp("check_template"))


def write_template(root: Path) -> Path:
    """Write the two synthetic experiments (plates and tracks) under ``root``."""
    for seed, name in enumerate(EXPERIMENTS):
        write_synthetic_plate(
            root / f"{name}.zarr",
            wells=("A/1", "A/2", "B/1", "B/2"),
            n_timepoints=6,
            z_size=3,
            yx_size=(64, 64),
            cells_per_fov=5,
            border_margin=8,
            seed=seed,
            tracks_path=root / f"{name}_tracks",
        )
    return root


@dataclass
class Setup:
    """A good configuration (experiments file + data module arguments) and helpers to break it."""

    root: Path
    experiments: list[dict] = field(default_factory=list)
    args: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)  # extra top-level config keys (return_predictions, trainer, ...)
    experiments_text: str | None = None  # written verbatim instead of `experiments` when set

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yml"

    @property
    def experiments_path(self) -> Path:
        return self.root / "experiments.yml"

    def plate(self, exp: str) -> Path:
        return self.data / f"{exp}.zarr"

    def csv(self, exp: str, fov: str = "A/1/0") -> Path:
        return self.data / f"{exp}_tracks" / fov / "tracks.csv"

    def tracks(self, exp: str, fov: str = "A/1/0") -> pd.DataFrame:
        return pd.read_csv(self.csv(exp, fov))

    def write_tracks(self, exp: str, fov: str, df: pd.DataFrame) -> None:
        df.to_csv(self.csv(exp, fov), index=False)

    def edit_norm(self, exp: str, edit: Callable[[dict], dict | None], fovs=None) -> None:
        """Apply ``edit`` to the normalisation metadata of FOVs (all by default); None removes it."""
        for fov in fovs or [f"{w}/0" for ws in WELLS.values() for w in ws]:
            attrs_file = self.plate(exp) / fov / ".zattrs"
            attrs = json.loads(attrs_file.read_text())
            new = edit(attrs.pop("normalization"))
            if new is not None:
                attrs["normalization"] = new
            attrs_file.write_text(json.dumps(attrs))

    def write(self) -> Path:
        if self.experiments_text is not None:
            self.experiments_path.write_text(self.experiments_text)
        else:
            self.experiments_path.write_text(yaml.safe_dump({"experiments": self.experiments}))
        args = {"experiments_yaml": str(self.experiments_path), **self.args}
        config = {
            "trainer": {"devices": 1},
            "data": {"class_path": "dynaclr.datamodule.MultiExperimentDataModule", "init_args": args},
            **self.top,
        }
        self.config_path.write_text(yaml.safe_dump(config))
        return self.config_path

    def check(self, stage: str = "auto") -> CheckReport:
        return check_config(self.write(), stage)


def _transform(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "init_args": init_args}


@pytest.fixture
def setup(template, tmp_path) -> Setup:
    return make_setup(template, tmp_path)


def make_setup(template: Path, tmp_path: Path) -> Setup:
    """A good configuration on a copy of the template's experiments under ``tmp_path``."""
    shutil.copytree(template, tmp_path / "data")
    s = Setup(tmp_path)
    for name in EXPERIMENTS:
        s.experiments.append(
            {
                "name": name,
                "data_path": str(s.plate(name)),
                "tracks_path": str(s.data / f"{name}_tracks"),
                "channel_names": ["Phase3D", "GFP"],
                "source_channel": ["Phase3D", "GFP"],
                "condition_wells": {k: list(v) for k, v in WELLS.items()},
                "interval_minutes": 30.0,
            }
        )
    s.args = {
        "z_range": [0, 2],
        "yx_patch_size": [32, 32],
        "final_yx_patch_size": [32, 32],
        "val_experiments": ["exp_b"],
        "tau_range": [0.5, 1.5],
        "batch_size": 8,
        "num_workers": 1,
        "normalizations": [
            _transform("viscy_transforms.NormalizeSampled", keys=["ch_0", "ch_1"], level="fov_statistics")
        ],
        "augmentations": [
            _transform("viscy_transforms.BatchedRandFlipd", keys=["ch_0", "ch_1"], prob=0.5, spatial_axes=[1, 2])
        ],
    }
    return s


# ---------------------------------------------------------------------------------------------- the table
@dataclass
class Case:
    """One bad input: what to break and what the report must say about it."""

    id: str
    input: str  # the bad input, for the table of the closing note
    mutate: Callable[[Setup], None]
    key: str  # configuration key named by the problem
    file: Callable[[Setup], Path]  # file named by the problem
    words: tuple[str, ...] = ()  # what else the message must say
    experiment: str | None = None
    severity: str = "error"
    stage: str = "auto"


def _args(**kw) -> Callable[[Setup], None]:
    return lambda s: s.args.update(kw)


def _exp(i: int, **kw) -> Callable[[Setup], None]:
    return lambda s: s.experiments[i].update(kw)


def _drop(i: int, key: str) -> Callable[[Setup], None]:
    return lambda s: s.experiments[i].pop(key)


def _config(s: Setup) -> Path:
    return s.config_path


def _exp_file(s: Setup) -> Path:
    return s.experiments_path


def _plate(exp: str) -> Callable[[Setup], Path]:
    return lambda s: s.plate(exp)


def _csv(exp: str, fov: str = "A/1/0") -> Callable[[Setup], Path]:
    return lambda s: s.csv(exp, fov)


def _tracks_root(exp: str) -> Callable[[Setup], Path]:
    return lambda s: s.data / f"{exp}_tracks"


def _edit_csv(exp: str, edit: Callable[[pd.DataFrame], pd.DataFrame], fov: str = "A/1/0"):
    def mutate(s: Setup) -> None:
        s.write_tracks(exp, fov, edit(s.tracks(exp, fov)))

    return mutate


def _set_rows(column: str, rows: list[int], value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[rows, column] = value
        return df

    return edit


def _raw_csv(exp: str, content: bytes, fov: str = "A/1/0"):
    return lambda s: s.csv(exp, fov).write_bytes(content)


def _model(**encoder_args) -> Callable[[Setup], None]:
    def mutate(s: Setup) -> None:
        encoder = {"backbone": "convnext_atto", "in_channels": 2, "in_stack_depth": 2, **encoder_args}
        s.top["model"] = {
            "class_path": "dynaclr.engine.ContrastiveModule",
            "init_args": {"encoder": _transform("viscy_models.contrastive.ContrastiveEncoder", **encoder)},
        }

    return mutate


def _single_channel(s: Setup) -> None:
    for e in s.experiments:
        e["source_channel"] = ["Phase3D"]
    s.args["normalizations"][0]["init_args"]["keys"] = ["ch_0"]
    s.args["augmentations"][0]["init_args"]["keys"] = ["ch_0"]


def _no_rows_in(exp: str, wells: list[str]):
    def mutate(s: Setup) -> None:
        for well in wells:
            s.write_tracks(exp, f"{well}/0", s.tracks(exp, f"{well}/0").iloc[:0])

    return mutate


def _all_outside(exp: str, fov: str):
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df["y"] = 500.0
        return df

    return _edit_csv(exp, edit, fov)


def _remove_csvs(exp: str, fovs: list[str]):
    def mutate(s: Setup) -> None:
        for fov in fovs:
            s.csv(exp, fov).unlink()

    return mutate


def _drop_norm_channel(channel: str):
    def edit(meta: dict) -> dict:
        meta.pop(channel)
        return meta

    return edit


def _drop_norm_level(level: str):
    def edit(meta: dict) -> dict:
        for levels in meta.values():
            levels.pop(level)
        return meta

    return edit


def _mixed_norm(s: Setup) -> None:
    s.args["normalizations"] = []  # nothing reads the statistics, but batches would mix FOVs with and without
    s.edit_norm("exp_a", lambda meta: None, fovs=["A/1/0"])


CASES = [
    # ---------------------------------------------------------------- arguments of the data module
    Case("batch_size_negative", "batch_size: -4", _args(batch_size=-4), "data.init_args.batch_size", _config, ("-4",)),
    Case("num_workers_negative", "num_workers: -1", _args(num_workers=-1), "data.init_args.num_workers", _config),
    Case(
        "z_range_reversed",
        "z_range: [2, 1]",
        _args(z_range=[2, 1]),
        "data.init_args.z_range",
        _config,
        ("0 <= start < stop",),
    ),
    Case(
        "patch_size_zero",
        "yx_patch_size: [0, 32]",
        _args(yx_patch_size=[0, 32]),
        "data.init_args.yx_patch_size",
        _config,
    ),
    Case(
        "final_larger_than_read",
        "final_yx_patch_size: [48, 48] with yx_patch_size [32, 32]",
        _args(final_yx_patch_size=[48, 48]),
        "data.init_args.final_yx_patch_size",
        _config,
        ("centre crop",),
    ),
    Case(
        "tau_range_reversed",
        "tau_range: [2.0, 0.5]",
        _args(tau_range=[2.0, 0.5]),
        "data.init_args.tau_range",
        _config,
        ("min > max",),
    ),
    Case(
        "dropout_prob",
        "channel_dropout_prob: 1.5",
        _args(channel_dropout_prob=1.5),
        "data.init_args.channel_dropout_prob",
        _config,
        ("[0, 1]",),
    ),
    Case("leaky_one", "leaky: 1.0", _args(leaky=1.0), "data.init_args.leaky", _config, ("[0, 1)",)),
    Case(
        "global_fraction",
        "temporal_global_fraction: -0.1",
        _args(temporal_global_fraction=-0.1),
        "data.init_args.temporal_global_fraction",
        _config,
    ),
    Case(
        "augmentation_prob",
        "BatchedRandFlipd prob: 1.5",
        lambda s: s.args["augmentations"][0]["init_args"].update(prob=1.5),
        "data.init_args.augmentations[0]",
        _config,
        ("prob", "1.5"),
    ),
    Case(
        "transform_keys_are_names",
        "NormalizeSampled keys: [Phase3D] (channel name, not ch_0)",
        lambda s: s.args["normalizations"][0]["init_args"].update(keys=["Phase3D"]),
        "data.init_args.normalizations[0].init_args.keys",
        _config,
        ("'Phase3D'", "ch_0", "ch_1"),
    ),
    Case(
        "unknown_argument",
        "batchsize: 8 (typo)",
        _args(batchsize=8),
        "data.init_args.batchsize",
        _config,
        ("did you mean 'batch_size'?",),
    ),
    Case(
        "unknown_val_experiment",
        "val_experiments: [exp_c]",
        _args(val_experiments=["exp_c"]),
        "data.init_args.val_experiments",
        _config,
        ("exp_c", "exp_a"),
    ),
    Case(
        "no_training_experiment",
        "val_experiments: [exp_a, exp_b]",
        _args(val_experiments=["exp_a", "exp_b"]),
        "data.init_args.val_experiments",
        _config,
        ("none is left for training",),
    ),
    Case(
        "unknown_weighted_experiment",
        "experiment_weights: {exp_x: 1.0}",
        _args(experiment_weights={"exp_x": 1.0}),
        "data.init_args.experiment_weights",
        _config,
        ("exp_x",),
    ),
    Case(
        "unknown_condition_ratio",
        "condition_ratio: {infectd: 0.5, uninfected: 0.5}",
        _args(condition_ratio={"infectd": 0.5, "uninfected": 0.5}),
        "data.init_args.condition_ratio",
        _config,
        ("infectd", "infected"),
    ),
    Case(
        "dropout_channel_of_one_channel",
        "channel_dropout_channels: [1] with one source channel",
        lambda s: (_single_channel(s), s.args.update(channel_dropout_channels=[1])),
        "data.init_args.channel_dropout_channels",
        _config,
        ("[1]", "1 source channel"),
    ),
    Case(
        "tau_unsatisfiable",
        "tau_range: [0.1, 0.2] h at 30 min/frame",
        _args(tau_range=[0.1, 0.2]),
        "data.init_args.tau_range",
        _exp_file,
        ("exp_a", "frames 0..0", "widen tau_range"),
    ),
    Case(
        "batch_larger_than_anchors",
        "batch_size: 4096 (more than the training anchors)",
        _args(batch_size=4096),
        "data.init_args.batch_size",
        _config,
        ("4096", "no batch"),
    ),
    Case(
        "include_wells_form",
        "include_wells: [A1]",
        _args(include_wells=["A1"]),
        "data.init_args.include_wells",
        _config,
        ("'A/1'",),
    ),
    Case(
        "include_wells_not_in_plates",
        "include_wells: [A/1, A/2, B/1, B/2, H/12]",
        _args(include_wells=["A/1", "A/2", "B/1", "B/2", "H/12"]),
        "data.init_args.include_wells",
        _config,
        ("['H/12'] match no well",),
        severity="warning",
    ),
    Case(
        "exclude_fovs_not_in_plates",
        "exclude_fovs: [A/1] (a well, not a FOV)",
        _args(exclude_fovs=["A/1"]),
        "data.init_args.exclude_fovs",
        _config,
        ("['A/1'] match no FOV", "A/1/0"),
        severity="warning",
    ),
    Case(
        "unknown_predict_experiment",
        "predict_experiments: [exp_z] (predict config)",
        lambda s: (s.args.update(predict_experiments=["exp_z"]), s.top.update(return_predictions=False)),
        "data.init_args.predict_experiments",
        _config,
        ("exp_z",),
    ),
    # ---------------------------------------------------------------- the experiments file
    Case(
        "experiments_file_missing",
        "experiments_yaml: a file that does not exist",
        _args(experiments_yaml="/nonexistent/experiments.yml"),
        "data.init_args.experiments_yaml",
        lambda s: Path("/nonexistent/experiments.yml"),
        ("not found",),
    ),
    Case(
        "experiments_file_not_yaml",
        "experiments file with a YAML syntax error",
        lambda s: setattr(s, "experiments_text", "experiments: [\n  - name: a\n    data_path: [\n"),
        "data.init_args.experiments_yaml",
        _exp_file,
        ("not valid YAML (line 2, column 3: expected the node content",),
    ),
    Case(
        "missing_data_path",
        "experiment without data_path",
        _drop(1, "data_path"),
        "experiments[1].data_path",
        _exp_file,
        ("missing required key",),
        "exp_b",
    ),
    Case(
        "missing_source_channel",
        "experiment without source_channel",
        _drop(0, "source_channel"),
        "experiments[0].source_channel",
        _exp_file,
        ("missing required key",),
        "exp_a",
    ),
    Case(
        "unknown_experiment_key",
        "experiment key colour: red",
        _exp(0, colour="red"),
        "experiments[0].colour",
        _exp_file,
        ("unknown key",),
        "exp_a",
    ),
    Case(
        "duplicate_names", "two experiments named exp_a", _exp(1, name="exp_a"), "name", _exp_file, ("unique",), "exp_a"
    ),
    Case(
        "interval_zero",
        "interval_minutes: 0",
        _exp(0, interval_minutes=0),
        "interval_minutes",
        _exp_file,
        ("> 0",),
        "exp_a",
    ),
    Case(
        "well_without_slash",
        "condition_wells: {uninfected: [A1, A2], ...}",
        _exp(0, condition_wells={"uninfected": ["A1", "A2"], "infected": ["B/1", "B/2"]}),
        "condition_wells.uninfected",
        _exp_file,
        ("'A1'", "write 'A/1'"),
        "exp_a",
    ),
    Case(
        "condition_lists_empty",
        "condition_wells: {uninfected: [], infected: []}",
        _exp(1, condition_wells={"uninfected": [], "infected": []}),
        "condition_wells",
        _exp_file,
        ("empty well list",),
        "exp_b",
    ),
    Case(
        "well_in_two_conditions",
        "well A/1 under uninfected and infected",
        _exp(0, condition_wells={"uninfected": ["A/1", "A/2"], "infected": ["A/1", "B/1", "B/2"]}),
        "condition_wells.uninfected",  # the file lists conditions alphabetically: infected first
        _exp_file,
        ("'A/1'", "one condition per well"),
        "exp_a",
    ),
    Case(
        "well_not_in_plate",
        "condition_wells: {mock: [C/3]}",
        _exp(0, condition_wells={**WELLS, "mock": ["C/3"]}),
        "condition_wells.mock",
        _plate("exp_a"),
        ("C/3", "not in the plate"),
        "exp_a",
    ),
    Case(
        "condition_without_cells",
        "every tracking row of wells B/1, B/2 outside the image",
        lambda s: (_all_outside("exp_a", "B/1/0")(s), _all_outside("exp_a", "B/2/0")(s)),
        "condition_wells.infected",
        _exp_file,
        ("condition 'infected' has no cells",),
        "exp_a",
    ),
    Case(
        "source_channel_not_in_channels",
        "source_channel: [Phase3D, RFP]",
        _exp(0, source_channel=["Phase3D", "RFP"]),
        "source_channel",
        _exp_file,
        ("RFP", "zero_fill_missing_channels"),
        "exp_a",
    ),
    Case(
        "channel_names_differ_from_plate",
        "channel_names: [Phase3D, mCherry]",
        _exp(1, channel_names=["Phase3D", "mCherry"], source_channel=["Phase3D", "mCherry"]),
        "channel_names",
        _plate("exp_b"),
        ("mCherry", "GFP"),
        "exp_b",
    ),
    Case(
        "source_channel_counts_differ",
        "source_channel [Phase3D] in one experiment, [Phase3D, GFP] in the other",
        _exp(1, source_channel=["Phase3D"]),
        "source_channel",
        _exp_file,
        ("'exp_a': 2", "'exp_b': 1"),
    ),
    Case(
        "channel_names_a_string",
        "channel_names: Phase3D (a string, not a list)",
        _exp(0, channel_names="Phase3D"),
        "channel_names",
        _exp_file,
        ("must be a list of channel names",),
        "exp_a",
    ),
    Case(
        "condition_wells_a_list",
        "condition_wells: [A/1, B/1] (a list, not condition -> wells)",
        _exp(1, condition_wells=["A/1", "B/1"]),
        "condition_wells",
        _exp_file,
        ("must map condition -> list of wells",),
        "exp_b",
    ),
    Case(
        "interval_a_word",
        "interval_minutes: thirty",
        _exp(0, interval_minutes="thirty"),
        "interval_minutes",
        _exp_file,
        ("must be a number", "'thirty'"),
        "exp_a",
    ),
    Case(
        "data_path_missing",
        "data_path: a store that does not exist",
        lambda s: s.experiments[0].update(data_path=str(s.root / "nope.zarr")),
        "data_path",
        _exp_file,
        ("nope.zarr", "does not exist"),
        "exp_a",
    ),
    Case(
        "data_path_not_a_plate",
        "data_path: a directory that is not an OME-Zarr plate",
        lambda s: (
            s.root.joinpath("empty.zarr").mkdir(),
            s.experiments[0].update(data_path=str(s.root / "empty.zarr")),
        ),
        "data_path",
        lambda s: s.root / "empty.zarr",
        ("cannot open",),
        "exp_a",
    ),
    Case(
        "tracks_path_missing",
        "tracks_path: a directory that does not exist",
        lambda s: s.experiments[1].update(tracks_path=str(s.root / "no_tracks")),
        "tracks_path",
        _exp_file,
        ("no_tracks", "not a directory"),
        "exp_b",
    ),
    # ---------------------------------------------------------------- plates
    Case(
        "z_range_past_plate",
        "z_range: [0, 6] on a Z = 3 plate",
        _args(z_range=[0, 6]),
        "data.init_args.z_range",
        _plate("exp_a"),
        ("3 Z planes", "A/1/0"),
        "exp_a",
    ),
    Case(
        "patch_larger_than_image",
        "yx_patch_size: [96, 96] on 64 x 64 images",
        _args(yx_patch_size=[96, 96], final_yx_patch_size=[32, 32]),
        "data.init_args.yx_patch_size",
        _plate("exp_b"),
        ("64 x 64", "at most [64, 64]"),
        "exp_b",
    ),
    Case(
        "plate_without_norm_meta",
        "plate without normalisation metadata",
        lambda s: s.edit_norm("exp_b", lambda meta: None),
        "data.init_args.normalizations",
        _plate("exp_b"),
        ("no normalisation metadata", "dynaclr preprocess --data_path", "exp_b.zarr", "[Phase3D, GFP]"),
        "exp_b",
    ),
    Case(
        "norm_meta_without_channel",
        "normalisation metadata without channel GFP",
        lambda s: s.edit_norm("exp_a", _drop_norm_channel("GFP")),
        "data.init_args.normalizations",
        _plate("exp_a"),
        ("no channel 'GFP'", "dynaclr preprocess", "--channel_names '[GFP]'"),
        "exp_a",
    ),
    Case(
        "norm_meta_without_level",
        "normalisation metadata without fov_statistics",
        lambda s: s.edit_norm("exp_a", _drop_norm_level("fov_statistics")),
        "data.init_args.normalizations",
        _plate("exp_a"),
        ("'fov_statistics'", "dynaclr preprocess"),
        "exp_a",
    ),
    Case(
        "norm_meta_mixed",
        "one FOV without normalisation metadata, no NormalizeSampled",
        _mixed_norm,
        "data.init_args.normalizations",
        _plate("exp_a"),
        ("A/1/0", "cannot be normalised", "dynaclr preprocess"),
        "exp_a",
    ),
    # ---------------------------------------------------------------- tracking CSVs
    Case("csv_empty", "0-byte tracks CSV", _raw_csv("exp_a", b""), "tracks_path", _csv("exp_a"), ("empty",), "exp_a"),
    Case(
        "csv_unreadable",
        "tracks CSV that is not text",
        _raw_csv("exp_b", b"\xff\xfe\x00\x81binary\x00", "B/2/0"),
        "tracks_path",
        _csv("exp_b", "B/2/0"),
        ("cannot read",),
        "exp_b",
    ),
    Case(
        "csv_missing_column",
        "tracks CSV without column t",
        _edit_csv("exp_a", lambda df: df.drop(columns="t")),
        "tracks_path",
        _csv("exp_a"),
        ("missing tracking columns ['t']",),
        "exp_a",
    ),
    Case(
        "csv_nan_t",
        "NaN in t (data rows 2 and 5)",
        _edit_csv("exp_a", _set_rows("t", [2, 5], np.nan), "A/2/0"),
        "tracks_path",
        _csv("exp_a", "A/2/0"),
        ("'t'", "NaN", "lines 4, 7"),
        "exp_a",
    ),
    Case(
        "csv_fractional_track_id",
        "track_id 1.5 (data row 3)",
        _edit_csv("exp_b", _set_rows("track_id", [3], 1.5)),
        "tracks_path",
        _csv("exp_b"),
        ("'track_id'", "integers", "1.5", "line 5"),
        "exp_b",
    ),
    Case(
        "csv_text_t",
        "t = 'abc' (data row 0)",
        _edit_csv("exp_a", _set_rows("t", [0], "abc")),
        "tracks_path",
        _csv("exp_a"),
        ("'t'", "non-numbers", "'abc'", "line 2"),
        "exp_a",
    ),
    Case(
        "csv_t_beyond_movie",
        "t = 10 in a 6-frame movie (data row 1)",
        _edit_csv("exp_a", _set_rows("t", [1], 10)),
        "tracks_path",
        _csv("exp_a"),
        ("t = 10", "line 3", "0..5"),
        "exp_a",
    ),
    Case(
        "csv_nan_coordinates",
        "NaN in y (2 rows)",
        _edit_csv("exp_a", _set_rows("y", [0, 1], np.nan), "B/1/0"),
        "tracks_path",
        _tracks_root("exp_a"),
        ("B/1/0 (2 NaN, 0 outside)",),
        "exp_a",
        "warning",
    ),
    Case(
        "csv_outside_image",
        "3 rows with x = 70 in 64-pixel images",
        _edit_csv("exp_b", _set_rows("x", [0, 1, 2], 70.0), "A/2/0"),
        "tracks_path",
        _tracks_root("exp_b"),
        ("A/2/0 (0 NaN, 3 outside)",),
        "exp_b",
        "warning",
    ),
    Case(
        "csv_header_only",
        "tracks CSV with a header and no rows",
        _no_rows_in("exp_a", ["A/2"]),
        "tracks_path",
        _tracks_root("exp_a"),
        ("header but no rows", "A/2/0"),
        "exp_a",
        "warning",
    ),
    Case(
        "fov_without_csv",
        "FOV B/2/0 without tracks CSV",
        _remove_csvs("exp_b", ["B/2/0"]),
        "tracks_path",
        _tracks_root("exp_b"),
        ("no tracking CSV", "B/2/0"),
        "exp_b",
        "warning",
    ),
    Case(
        "no_csv_at_all",
        "no tracks CSV in any FOV (tracks_path points to the wrong folder layout)",
        _remove_csvs("exp_a", ["A/1/0", "A/2/0", "B/1/0", "B/2/0"]),
        "tracks_path",
        _tracks_root("exp_a"),
        ("no tracking CSV for any of the 4 FOVs",),
        "exp_a",
    ),
    Case(
        "cells_in_no_condition",
        "well B/2 in no condition",
        _exp(0, condition_wells={"uninfected": ["A/1", "A/2"], "infected": ["B/1"]}),
        "condition_wells",
        _exp_file,
        ("B/2", "condition 'unknown'"),
        "exp_a",
        "warning",
    ),
    # ---------------------------------------------------------------- the model against the data
    Case(
        "model_in_channels",
        "model encoder in_channels: 1 with 2 source channels",
        _model(in_channels=1),
        "model.init_args.encoder.init_args.in_channels",
        _config,
        ("in_channels=1", "2 source channel"),
    ),
    Case(
        "model_in_stack_depth",
        "model encoder in_stack_depth: 5 with z_range [0, 2]",
        _model(in_stack_depth=5),
        "model.init_args.encoder.init_args.in_stack_depth",
        _config,
        ("in_stack_depth=5", "reads 2 Z plane"),
    ),
]


def _matching(report: CheckReport, case: Case, s: Setup) -> list[Problem]:
    file = str(case.file(s))
    return [
        p
        for p in report.problems
        if p.severity == case.severity
        and p.key == case.key
        and p.file == file
        and p.experiment == case.experiment
        and all(w in str(p) for w in case.words)
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_reported_naming_its_culprit(setup, case):
    case.mutate(setup)
    report = setup.check(case.stage)
    found = _matching(report, case, setup)
    assert found, f"no {case.severity} naming {case.key!r} / {case.file(setup)} / {case.words}:\n{report.format()}"
    text = str(found[0])
    assert case.key in text and str(case.file(setup)) in text
    if case.experiment is not None:
        assert f"experiment '{case.experiment}'" in text
    assert report.ok == (case.severity == "warning")


def test_table_has_at_least_30_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert len({c.input for c in CASES}) == len(CASES)


def test_good_config_has_no_problem_and_counts_anchors(setup):
    report = setup.check()
    assert report.problems == [], report.format()
    assert any("training experiment(s)" in note and "anchors" in note for note in report.notes)
    assert report.summary().startswith("dynaclr check: 0 errors, 0 warnings")


def test_every_problem_is_reported_at_once(setup):
    setup.args.update(batch_size=-4, z_range=[0, 6])
    setup.experiments[1].pop("data_path")
    _edit_csv("exp_a", _set_rows("t", [2], np.nan))(setup)
    _edit_csv("exp_a", _set_rows("y", [1], np.nan), "B/1/0")(setup)
    report = setup.check()
    keys = [p.key for p in report.errors]
    assert "data.init_args.batch_size" in keys
    assert "data.init_args.z_range" in keys
    assert "experiments[1].data_path" in keys
    assert "tracks_path" in keys
    assert any("NaN" in p.message for p in report.warnings)


def test_predict_stage_is_inferred_and_skips_training_checks(setup):
    setup.args.update(tau_range=[0.1, 0.2], batch_size=4096)  # would be errors for training
    setup.top.update(return_predictions=False)
    report = setup.check()
    assert report.ok, report.format()
    assert any("observations to embed" in note for note in report.notes)
    assert not setup.check(stage="fit").ok


def test_world_size_from_the_trainer_section(setup):
    setup.args.update(batch_size=64)
    assert setup.check().ok
    setup.top.update(trainer={"devices": 4, "num_nodes": 2})
    report = setup.check()
    assert any("on 8 processes" in p.message for p in report.errors), report.format()


def test_other_data_modules_are_not_checked(setup):
    setup.write()
    config = yaml.safe_load(setup.config_path.read_text())
    config["data"] = {"class_path": "viscy_data.triplet.TripletDataModule", "init_args": {}}
    setup.config_path.write_text(yaml.safe_dump(config))
    report = check_config(setup.config_path)
    assert report.ok and "is not a MultiExperimentDataModule" in report.warnings[0].message


# ---------------------------------------------------------------------------------------------- the command
def test_cli_exit_codes_and_no_traceback(setup):
    runner = CliRunner()
    good = runner.invoke(dynaclr_group, ["check", "-c", str(setup.write())])
    assert good.exit_code == 0, good.output
    assert "0 errors, 0 warnings" in good.output
    _edit_csv("exp_a", _set_rows("y", [0], np.nan))(setup)
    warned = runner.invoke(dynaclr_group, ["check", "-c", str(setup.write())])
    assert warned.exit_code == 0 and "warning: [experiment 'exp_a'] tracks_path" in warned.output
    setup.args.update(batch_size=-4)
    bad = runner.invoke(dynaclr_group, ["check", "-c", str(setup.write())])
    assert bad.exit_code == 1
    assert "error: data.init_args.batch_size: batch_size must be an integer >= 1, got -4" in bad.output
    assert "Traceback" not in bad.output


def test_cli_debug_shows_the_traceback_of_an_unexpected_failure(setup, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr("dynaclr.check.command.check_config", boom)
    runner = CliRunner()
    quiet = runner.invoke(dynaclr_group, ["check", "-c", str(setup.write())])
    assert quiet.exit_code == 1 and "error: RuntimeError: unexpected" in quiet.output
    assert quiet.exc_info[0] is SystemExit
    loud = runner.invoke(dynaclr_group, ["check", "-c", str(setup.write()), "--debug"])
    assert isinstance(loud.exception, RuntimeError)


def test_unexpected_failure_while_checking_a_plate_names_it(setup, monkeypatch):
    monkeypatch.setattr("dynaclr.index.tracks_csv.read_tracks_csv", lambda *a, **k: 1 / 0)
    report = setup.check()
    problem = next(p for p in report.errors if "ZeroDivisionError" in p.message)
    assert problem.experiment == "exp_a" and problem.file == str(setup.plate("exp_a"))
    with pytest.raises(ZeroDivisionError):
        check_config(setup.config_path, debug=True)


def test_fit_stops_before_writing_anything(setup):
    setup.args.update(batch_size=-4, z_range=[0, 6])
    setup.write()
    config = yaml.safe_load(setup.config_path.read_text())
    config["trainer"] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(setup.root / "logs"), "version": "run"},
        },
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(setup.root / "checkpoints")},
            }
        ],
        "use_distributed_sampler": False,
    }
    config["model"] = {
        "class_path": "dynaclr.engine.ContrastiveModule",
        "init_args": {
            "encoder": {
                "class_path": "viscy_models.contrastive.ContrastiveEncoder",
                "init_args": {
                    "backbone": "convnext_atto",
                    "in_channels": 2,
                    "in_stack_depth": 2,
                    "stem_kernel_size": [2, 4, 4],
                    "stem_stride": [2, 4, 4],
                },
            }
        },
    }
    setup.config_path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(dynaclr_group, ["fit", "-c", str(setup.config_path)])
    assert result.exit_code == 1, result.output
    assert "error: data.init_args.batch_size" in result.output
    assert "error: [experiment 'exp_a'] data.init_args.z_range" in result.output
    assert "Traceback" not in result.output
    assert not (setup.root / "logs").exists() and not (setup.root / "checkpoints").exists()
    debug = CliRunner().invoke(dynaclr_group, ["fit", "-c", str(setup.config_path), "--debug"])
    assert debug.exit_code == 1 and isinstance(debug.exception, ConfigCheckError)  # raised: its traceback shows
    assert "data.init_args.batch_size" in str(debug.exception)
    assert not (setup.root / "logs").exists() and not (setup.root / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------- Python API
def _dm(setup: Setup, **kw) -> MultiExperimentDataModule:
    setup.write()
    args = {k: v for k, v in setup.args.items() if k not in ("normalizations", "augmentations")}
    return MultiExperimentDataModule(experiments_yaml=str(setup.experiments_path), **{**args, **kw})


def test_preflight_raises_every_error_and_setup_reuses_its_index(setup):
    with pytest.raises(ConfigCheckError) as err:
        _dm(setup, batch_size=0, z_range=(0, 9)).preflight_check("fit")
    assert len(err.value.report.errors) == 3  # batch_size, and z_range in both experiments
    assert "batch_size" in str(err.value) and "z_range" in str(err.value)
    dm = _dm(setup)
    report = dm.preflight_check("fit")
    assert report.ok
    prebuilt = dict(dm._prebuilt_indices)
    assert set(prebuilt) == {("exp_a",), ("exp_b",)}
    dm.setup("fit")
    assert dm.train_dataset.index is prebuilt[("exp_a",)] and dm.val_dataset.index is prebuilt[("exp_b",)]
    assert dm._prebuilt_indices == {}


def test_check_datamodule_reads_arguments_from_the_instance(setup):
    report = check_datamodule(_dm(setup, leaky=1.0), stage="test")  # no data checks for other stages
    assert [p.key for p in report.problems] == ["data.init_args.leaky"]


def test_argument_problems_accepts_the_defaults():
    import inspect

    defaults = {
        k: p.default
        for k, p in inspect.signature(MultiExperimentDataModule.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    # the spec's required geometry defaults to None only for the experiments_file alias: reported as required
    required = ("z_range", "yx_patch_size", "final_yx_patch_size")
    problems = argument_problems(defaults).problems
    assert sorted(p.key for p in problems) == sorted(f"data.init_args.{k}" for k in required)
    assert all("is required" in p.message for p in problems)
    geometry = {"z_range": [0, 1], "yx_patch_size": [64, 64], "final_yx_patch_size": [32, 32]}
    assert argument_problems({**defaults, **geometry}).problems == []


def test_registry_names_missing_keys_and_file(setup):
    setup.experiments[1].pop("source_channel")
    setup.write()
    with pytest.raises(TypeError, match=r"\[experiment 'exp_b'\] experiments\[1\]\.source_channel: missing") as err:
        ExperimentRegistry.from_yaml(setup.experiments_path)
    assert str(setup.experiments_path) in str(err.value)


@pytest.mark.parametrize(
    ("wells", "match"),
    [
        ({"c": ["A1"]}, r"'A1' is not in row/col form: write 'A/1'"),
        ({"c": [], "d": []}, "every condition has an empty well list"),
        ({"c": ["A/1/0"]}, "names a FOV"),
    ],
)
def test_registry_refuses_wells_that_match_nothing(setup, wells, match):
    setup.experiments[0]["condition_wells"] = wells
    setup.write()
    with pytest.raises(ValueError, match=match) as err:
        ExperimentRegistry.from_yaml(setup.experiments_path)
    assert "exp_a" in str(err.value) and str(setup.experiments_path) in str(err.value)


def _registry(setup: Setup) -> ExperimentRegistry:
    setup.write()
    return ExperimentRegistry.from_yaml(setup.experiments_path)


def test_index_names_the_file_fov_and_lines_of_bad_tracks(setup):
    _edit_csv("exp_a", _set_rows("t", [2], np.nan), "B/1/0")(setup)
    with pytest.raises(ValueError, match=r"B/1/0/tracks\.csv \(experiment 'exp_a', FOV B/1/0\): column 't'.*line 4"):
        MultiExperimentIndex(_registry(setup), slice(0, 2), (32, 32))


def test_index_names_an_empty_csv(setup):
    _raw_csv("exp_b", b"", "A/2/0")(setup)
    with pytest.raises(ValueError, match=r"A/2/0/tracks\.csv \(experiment 'exp_b', FOV A/2/0\): the file is empty"):
        MultiExperimentIndex(_registry(setup), slice(0, 2), (32, 32))


def test_index_refuses_a_z_range_past_the_plate(setup):
    with pytest.raises(ValueError, match=r"Experiment 'exp_a', FOV A/1/0 of .*exp_a\.zarr: z_range \[0, 6\]"):
        MultiExperimentIndex(_registry(setup), slice(0, 6), (32, 32))


def test_index_warns_with_counts_of_dropped_rows_and_unknown_conditions(setup, caplog):
    _edit_csv("exp_a", _set_rows("y", [0, 1], np.nan), "A/1/0")(setup)
    _edit_csv("exp_a", _set_rows("x", [0], -3.0), "B/2/0")(setup)
    setup.experiments[0]["condition_wells"] = {"uninfected": ["A/1", "A/2"], "infected": ["B/1"], "mock": ["C/1"]}
    registry = _registry(setup)
    rows = sum(len(setup.tracks(e, f"{w}/0")) for e in EXPERIMENTS for ws in WELLS.values() for w in ws)
    with caplog.at_level("WARNING", logger="dynaclr.index"):
        index = MultiExperimentIndex(registry, slice(0, 2), (32, 32))
    assert len(index.tracks) == rows - 3
    text = caplog.text
    assert "Experiment 'exp_a': 3 tracking rows left out (2 with NaN y/x, 1 with the centroid outside" in text
    assert "A/1/0 (2 NaN, 0 outside)" in text and "B/2/0 (0 NaN, 1 outside)" in text
    assert "wells ['B/2'] are in no condition" in text
    assert "condition 'mock' has no tracked FOV" in text


def test_index_refuses_include_wells_not_in_row_col_form(setup):
    with pytest.raises(ValueError, match="include_wells: well 'B1' is not in row/col form: write 'B/1'"):
        MultiExperimentIndex(_registry(setup), slice(0, 2), (32, 32), include_wells=["B1"])


def test_validate_stage_checks_validation_not_training_batches(setup):
    setup.args.update(batch_size=4096)  # too large for training, irrelevant to validation
    assert setup.check(stage="validate").ok
    setup.args.update(val_experiments=[])
    report = setup.check(stage="validate")
    assert [p.key for p in report.errors] == ["data.init_args.val_experiments"]
    assert "nothing to validate" in report.errors[0].message


def test_config_that_is_not_yaml_or_has_no_data_section(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("data:\n  init_args: {batch_size: 8\n")
    report = check_config(broken)
    assert [str(p) for p in report.errors] == [
        f"error: not valid YAML (line 3, column 1: expected ',' or '}}', but got '<stream end>') (in {broken})"
    ]
    empty = tmp_path / "trainer_only.yml"
    empty.write_text("trainer: {devices: 1}\n")
    assert check_config(empty).errors[0].key == "data"


def test_preflight_compares_the_model_inputs_with_the_data(setup):
    from viscy_models.contrastive import ContrastiveEncoder

    def encoder(in_channels: int, in_stack_depth: int) -> ContrastiveEncoder:
        return ContrastiveEncoder(
            backbone="convnext_atto",
            in_channels=in_channels,
            in_stack_depth=in_stack_depth,
            stem_kernel_size=(2, 4, 4),
            stem_stride=(2, 4, 4),
        )

    with pytest.raises(ConfigCheckError) as err:
        _dm(setup).preflight_check("fit", model=encoder(1, 4))
    messages = {p.key: p.message for p in err.value.report.errors}
    assert set(messages) == {"model.in_channels", "model.in_stack_depth"}
    assert "in_channels=1" in messages["model.in_channels"] and "2 source channel" in messages["model.in_channels"]
    assert "in_stack_depth=4" in messages["model.in_stack_depth"] and "[0, 2]" in messages["model.in_stack_depth"]
    assert _dm(setup).preflight_check("fit", model=encoder(2, 2)).ok


def test_default_channel_dropout_fits_one_source_channel(setup):
    _single_channel(setup)  # the default (None) drops nothing with one channel: not an error
    report = setup.check()
    assert report.ok and not any("channel_dropout" in str(p) for p in report.problems), report.format()


def test_missing_required_geometry_is_reported_by_name(setup):
    for key in ("z_range", "final_yx_patch_size"):
        setup.args.pop(key, None)
    report = setup.check()
    assert sorted(p.key for p in report.errors) == ["data.init_args.final_yx_patch_size", "data.init_args.z_range"]
    assert all("is required" in p.message for p in report.errors), report.format()
