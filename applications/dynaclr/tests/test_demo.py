"""`dynaclr demo`: dataset, configs, read-outs, baselines and a reduced end-to-end run."""

import copy
import json
import subprocess
import sys

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dynaclr.demo.data import DEMO_EXPERIMENTS, PRESETS, DemoExperiment, write_demo_dataset
from dynaclr.demo.report import (
    METHODS,
    READOUTS,
    Readouts,
    format_table,
    plot_embeddings,
    plot_readouts,
    score_representation,
    split_by_experiment,
    summarise,
    track_groups,
    transition_tracks,
)
from dynaclr.demo.run import _fit_config, _predict_config, demo_config_path, main, run_demo
from dynaclr.experiment import ExperimentRegistry

SMALL = {"n_timepoints": 6, "fovs_per_well": 1, "yx_size": (48, 48), "z_size": 3, "cells_per_fov": 3}
EXPERIMENTS = (
    DemoExperiment("exp_gfp", ("Phase3D", "GFP"), 30.0, 2.0, 2),
    DemoExperiment("exp_rfp", ("Phase3D", "RFP", "Mito"), 20.0, 1.0, 3, reporter_gain=0.5, background=0.3),
    DemoExperiment("exp_val", ("Phase3D", "mScarlet"), 30.0, 1.5, 2, blur_sigma=0.7),
    DemoExperiment("exp_held", ("Phase3D", "mNeonGreen"), 30.0, 0.5, 4, noise_sd=0.1),
)
DYNAMICS = {"onset_spread_hours": 1.0, "never_infected_fraction": 0.3, "phenotype_hours": 1.0}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "data"
    return write_demo_dataset(root, experiments=EXPERIMENTS, progress=False, **SMALL, **DYNAMICS)


def test_shipped_experiments_differ_in_reporter_and_acquisition():
    assert len(DEMO_EXPERIMENTS) >= 4  # >= 2 training, validation, test
    reporters = [e.channel_names[1] for e in DEMO_EXPERIMENTS]
    assert len(set(reporters)) == len(reporters)
    assert all(e.channel_names[0] == "Phase3D" for e in DEMO_EXPERIMENTS)
    # validation and test are acquired unlike any training experiment: read-outs must transfer
    acquisition = [(e.noise_sd, e.reporter_gain, e.background, e.blur_sigma) for e in DEMO_EXPERIMENTS]
    assert len(set(acquisition)) == len(acquisition)
    for held in DEMO_EXPERIMENTS[-2:]:
        assert held.noise_sd >= max(e.noise_sd for e in DEMO_EXPERIMENTS[:-2])


@pytest.mark.parametrize("fast", [False, True])
def test_presets_centre_every_patch_on_its_cell(fast):
    config = yaml.safe_load(demo_config_path().read_text())
    patch = config["data"]["init_args"]["yx_patch_size"]
    data = PRESETS[fast]["data"]
    # the dataset clamps patches of cells closer to the border than half a patch: keep cells out of that band
    assert data["border_margin"] >= max(patch) / 2
    assert min(data["yx_size"]) - 2 * data["border_margin"] >= max(patch)


def test_dataset_registry_lineage_and_known_onset(small_dataset):
    registry = ExperimentRegistry.from_yaml(small_dataset.experiments_yaml)
    assert [e.name for e in registry.experiments] == [e.name for e in EXPERIMENTS]
    assert registry.num_source_channels == 2
    assert registry.channel_maps["exp_rfp"] == {0: 0, 1: 1}
    assert (small_dataset.validation, small_dataset.test) == ("exp_val", "exp_held")
    assert small_dataset.train_experiments == ["exp_gfp", "exp_rfp"]
    assert small_dataset.experiment("exp_rfp").reporter_gain == 0.5
    truth = small_dataset.annotations
    for exp in EXPERIMENTS:
        rows = truth[truth["experiment"] == exp.name]
        infected_well = rows["fov_name"].str.startswith("B/")
        # onsets per lineage, within onset_spread_hours of the experiment's first onset, only in infected wells
        onset = rows["infection_onset"]
        assert (onset[~infected_well] == -1).all()
        spread = exp.frames(DYNAMICS["onset_spread_hours"])
        assert onset[infected_well & (onset >= 0)].between(exp.infection_onset, exp.infection_onset + spread).all()
        expected = ((onset >= 0) & (rows["t"] >= onset)).astype(int)
        np.testing.assert_array_equal(rows["infection_state"].to_numpy(), expected.to_numpy())
        # hours since onset on the experiment's own clock, for infected cells only
        infected = rows["infection_state"] == 1
        hours = (rows["t"] - onset) * exp.interval_minutes / 60
        np.testing.assert_allclose(rows.loc[infected, "hours_since_onset"], hours[infected])
        assert rows.loc[~infected, "hours_since_onset"].isna().all()
        assert (small_dataset.experiments_yaml.parent / f"{exp.name}_annotations.csv").is_file()
    # norm metadata on every FOV
    from iohub.ngff import open_ome_zarr

    with open_ome_zarr(registry.experiments[0].data_path) as plate:
        _, position = next(iter(plate.positions()))
        assert "GFP" in position.zattrs["normalization"]


def _reporter_profiles(plate, images):
    """Integrated reporter (disk of radius 9) and centre value of isolated, in-focus, non-border interphase cells."""
    ann = plate.annotations
    zc = plate.shape[2] // 2
    height, width = plate.shape[3:]
    totals, centres, keep = [], [], []
    yy, xx = np.mgrid[:height, :width]
    for fov, frame in ann.groupby("fov_name"):
        for _, cells in frame.groupby("t"):
            yx = cells[["y", "x"]].to_numpy()
            gap = np.sqrt(((yx[:, None] - yx[None]) ** 2).sum(-1)) + np.eye(len(yx)) * 1e9
            isolated = (gap.min(1) > 30) & (np.minimum(yx, [height - 1, width - 1] - yx).min(1) > 10)
            for (_, row), ok in zip(cells.iterrows(), isolated & (cells["division"].to_numpy() == 0)):
                if not ok:
                    continue
                image = images[fov][row["t"], 1, zc] - 0.1  # background offset of the reporter
                disk = (yy - row["y"]) ** 2 + (xx - row["x"]) ** 2 <= 81
                totals.append(image[disk].sum())
                centres.append(image[int(round(row["y"])), int(round(row["x"]))])
                keep.append(row.name)
    return np.array(totals), np.array(centres), ann.loc[keep, "infection_state"].to_numpy() == 1


@pytest.mark.parametrize("brightness_sd", [0.0, 0.5])
def test_relocalisation_phenotype_is_structural_not_brighter(tmp_path, brightness_sd):
    from iohub.ngff import open_ome_zarr

    from viscy_data.synthetic import write_synthetic_plate

    plate = write_synthetic_plate(
        tmp_path / "p.zarr",
        n_timepoints=6,
        z_size=1,
        yx_size=(160, 160),
        cells_per_fov=4,
        infection_onset=2,
        division_probability=0.0,
        infection_phenotype="relocalisation",
        reporter_brightness_sd=brightness_sd,
        seed=3,
        tracks_path=tmp_path / "tracks",
    )
    with open_ome_zarr(plate.store_path) as store:
        images = {name: np.asarray(pos["0"][:]) for name, pos in store.positions()}
    totals, centres, infected = _reporter_profiles(plate, images)
    assert infected.sum() >= 5 and (~infected).sum() >= 5
    # the reporter moves into the nucleus: per unit of reporter, the centre is bright when infected and the
    # dark hole of a ring before, whatever the cell's expression level
    concentration = centres / totals
    assert concentration[infected].min() > 3 * concentration[~infected].max()
    # ... at the same integrated intensity (the disk clips a little of the wider cytoplasm)
    ratio = np.median(totals[infected]) / np.median(totals[~infected])
    if brightness_sd == 0:
        assert 0.9 < ratio < 1.25
    else:
        # cell-to-cell expression varies more than the states differ in total intensity
        spread = np.std(np.log(totals[~infected]))
        assert spread > abs(np.log(ratio))


def test_unknown_phenotype_is_named(tmp_path):
    from viscy_data.synthetic import write_synthetic_plate

    with pytest.raises(ValueError, match="glowing"):
        write_synthetic_plate(tmp_path / "p.zarr", infection_phenotype="glowing")
    with pytest.raises(ValueError, match="reporter_brightness_sd"):
        write_synthetic_plate(tmp_path / "p.zarr", reporter_brightness_sd=-1.0)


def test_dataset_rejects_onset_after_last_frame_and_too_few_experiments(tmp_path):
    with pytest.raises(ValueError, match="infection onset"):
        write_demo_dataset(tmp_path, n_timepoints=3, experiments=EXPERIMENTS, progress=False)
    with pytest.raises(ValueError, match="validation"):
        write_demo_dataset(tmp_path, experiments=EXPERIMENTS[:2], progress=False)


def test_demo_yml_is_a_multi_experiment_config_with_all_axes():
    config = yaml.safe_load(demo_config_path().read_text())
    assert config["model"]["class_path"] == "dynaclr.engine.ContrastiveModule"
    assert config["model"]["init_args"]["loss_function"]["class_path"] == "dynaclr.loss.NTXentHCL"
    data = config["data"]
    assert data["class_path"] == "dynaclr.datamodule.MultiExperimentDataModule"
    axes = data["init_args"]
    assert axes["experiment_aware"] and axes["condition_balanced"] and axes["temporal_enrichment"]
    assert axes["leaky"] > 0 and axes["channel_dropout_prob"] > 0
    assert config["trainer"]["accelerator"] == "cpu"


def test_configs_get_the_run_paths_and_differ_only_in_positives(tmp_path):
    template = yaml.safe_load(demo_config_path().read_text())
    pristine = copy.deepcopy(template)
    fit = _fit_config(template, tmp_path, tmp_path / "experiments.yml", "val", max_epochs=2, seed=3)
    fit_copy = copy.deepcopy(fit)
    assert fit["data"]["init_args"]["experiments_yaml"] == str(tmp_path / "experiments.yml")
    assert fit["data"]["init_args"]["val_experiments"] == ["val"]
    assert fit["trainer"]["max_epochs"] == 2
    assert fit["seed_everything"] == 3 and fit["data"]["init_args"]["seed"] == 3
    assert fit["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "logs")
    assert "/path/to" not in yaml.safe_dump(fit)
    assert template == pristine  # the template is not mutated (nested sections included)
    assert template["data"]["init_args"]["experiments_yaml"] != fit["data"]["init_args"]["experiments_yaml"]
    predict = _predict_config(fit, ["a", "held"], tmp_path / "e.zarr", tmp_path / "last.ckpt", tmp_path / "p")
    assert fit == fit_copy  # nor is the fit config the predict config is derived from
    # the ablation is the same run with same-frame positives
    ablation = _fit_config(template, tmp_path, tmp_path / "experiments.yml", "val", 2, 3, same_frame_positives=True)
    assert ablation["data"]["init_args"].pop("same_frame_positives") is True
    assert fit_copy["data"]["init_args"].pop("same_frame_positives") is False
    assert ablation == fit_copy
    assert predict["trainer"]["default_root_dir"] == str(tmp_path / "p")
    assert predict["ckpt_path"] == str(tmp_path / "last.ckpt")
    assert predict["data"]["init_args"]["predict_experiments"] == ["a", "held"]
    assert predict["trainer"]["callbacks"][0]["init_args"]["output_path"] == str(tmp_path / "e.zarr")
    assert predict["model"] == fit["model"]
    assert "ckpt_path" not in _predict_config(fit, ["held"], tmp_path / "e.zarr", None, tmp_path)


def test_refuses_to_clobber_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    result = CliRunner().invoke(main, ["--output-dir", str(out)])
    assert result.exit_code != 0
    assert "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "previous run"
    with pytest.raises(FileExistsError, match=str(out)):
        run_demo(out)
    with pytest.raises(ValueError, match="score_on"):
        run_demo(tmp_path / "other", score_on="train")
    with pytest.raises(ValueError, match="seeds"):
        run_demo(tmp_path / "other", seeds=[1, 1])


def _labelled(n_tracks, n_t, rng, signal, experiment="e"):
    """Cells of half-infected tracks (onset mid-track); features = signal x (infected, hours since onset) + noise."""
    rows, feats = [], []
    for track in range(n_tracks):
        onset = n_t // 3 if track % 2 else -1
        for t in range(n_t):
            infected = int(onset >= 0 and t >= onset)
            hours = (t - onset) * 0.5 if infected else np.nan
            vec = rng.normal(size=6)
            vec[0] += signal * 4 * infected
            vec[1] += signal * 2 * (0.0 if np.isnan(hours) else hours)
            feats.append(vec)
            y, x = rng.uniform(16, 80, size=2).round(2)
            rows.append((experiment, f"B/1/{track % 2}", track, t, y, x, infected, onset, hours))
    columns = ["experiment", "fov_name", "track_id", "t", "y", "x", "infection_state", "infection_onset"]
    columns.append("hours_since_onset")
    return np.asarray(feats, dtype=np.float32), pd.DataFrame(rows, columns=columns)


def test_split_by_experiment_labels_blocks_and_catches_misorder():
    rng = np.random.default_rng(0)
    xa, truth_a = _labelled(4, 6, rng, 1.0, "a")
    xb, truth_b = _labelled(6, 6, rng, 1.0, "b")
    truth = pd.concat([truth_a, truth_b], ignore_index=True)
    index = truth[["fov_name", "track_id", "t", "y", "x"]].assign(fov_name=lambda d: "/" + d["fov_name"])
    out = split_by_experiment(np.concatenate([xa, xb]), index, truth, ["a", "b"])
    assert out["a"].n_obs == 24 and out["b"].n_obs == 36
    np.testing.assert_array_equal(out["b"].X, xb)
    np.testing.assert_array_equal(out["b"].obs["infection_state"], truth_b["infection_state"])
    assert (out["b"].obs["experiment"] == "b").all()
    # the read-outs' cross-validation groups: one per track of an experiment, never shared across experiments
    both = pd.concat([out["a"].obs, out["b"].obs], ignore_index=True)
    groups = track_groups(both)
    assert len(np.unique(groups)) == 4 + 6
    assert not set(groups[:24]) & set(groups[24:])
    with pytest.raises(ValueError, match="rows"):
        split_by_experiment(xa, index.iloc[:24], truth, ["a", "b"])
    # the b block embedded first: the same track ids and frames, but b's cells are elsewhere than a's
    swapped = pd.concat([index.iloc[24:], index.iloc[:24]])
    with pytest.raises(ValueError, match="no annotation"):
        split_by_experiment(np.concatenate([xb, xa]), swapped, truth, ["a", "b"])


def test_transition_tracks_are_those_infected_after_their_first_frame():
    obs = pd.DataFrame(
        {
            "fov_name": ["A"] * 9,
            "track_id": [0, 0, 0, 1, 1, 1, 2, 2, 2],
            "t": [0, 1, 2, 0, 1, 2, 3, 4, 5],
            "infection_onset": [1, 1, 1, -1, -1, -1, 2, 2, 2],
        }
    )
    np.testing.assert_array_equal(transition_tracks(obs), [True] * 3 + [False] * 6)


def test_scores_separate_good_from_bad_representations():
    rng = np.random.default_rng(0)
    train = anndata.AnnData(*_labelled(40, 9, rng, 1.0))
    good = score_representation(train, anndata.AnnData(*_labelled(20, 9, rng, 1.0)))
    noise = anndata.AnnData(*_labelled(40, 9, rng, 0.0))
    bad = score_representation(noise, anndata.AnnData(*_labelled(20, 9, rng, 0.0)))
    assert isinstance(good, Readouts)
    assert good.infection_balanced_accuracy > 0.95 and bad.infection_balanced_accuracy < 0.7
    assert good.time_since_onset_spearman > 0.8 and abs(bad.time_since_onset_spearman) < 0.4
    assert good.temporal_order > 0.3 and abs(bad.temporal_order) < 0.2


def test_summary_table_and_figure_from_metrics(tmp_path):
    seeds = {str(s): Readouts(0.9 + s / 100, 0.5 + s / 10, 0.2) for s in range(3)}
    summary = summarise(seeds)
    assert summary["n"] == 3
    assert summary["mean"]["infection_balanced_accuracy"] == pytest.approx(0.91)
    assert summary["sd"]["time_since_onset_spearman"] == pytest.approx(0.1)
    single = summarise({"-": Readouts(0.8, 0.4, 0.1)})
    assert single["sd"]["temporal_order"] is None
    metrics = {
        "split": "validation",
        "scored_experiment": "exp",
        "seeds": [0, 1, 2],
        "methods": {"dynaclr": summary, "raw_pixels": single},
    }
    table = format_table(metrics)
    assert "DynaCLR (n=3)" in table and "0.910 +- 0.010" in table and "raw pixels" in table
    assert all(header in table for header, _ in READOUTS.values())
    markdown = format_table(metrics, markdown=True).splitlines()
    assert markdown[0].startswith("| method |") and len(markdown) == 2 + 2
    assert "| DynaCLR (n=3) | 0.910 ± 0.010 |" in markdown[2] and markdown[3].startswith("| raw pixels | 0.800 |")
    path = plot_readouts(json.loads(json.dumps(metrics)), tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    adata = anndata.AnnData(*_labelled(6, 6, rng, 1.0))
    path = plot_embeddings({"DynaCLR": adata}, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(1800)  # ~1 CPU-minute: 2 trainings of 1 epoch, 3 predictions, baselines
def test_reduced_demo_reports_every_method_and_readout(tmp_path):
    # the command a user runs, in its own process: torch loads after the CPU runtime is tuned, as in `dynaclr fit`
    out = tmp_path / "demo"
    command = [
        sys.executable,
        "-m",
        "dynaclr.cli",
        "demo",
        "--fast",
        "--tune_cpu",  # opt-in, as for `dynaclr fit`: idle OpenMP spinning slows a busy CI machine ~10x
        "--score-on",
        "validation",
        "--output-dir",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["scored_experiment"] == metrics["validation_experiment"]
    assert metrics["scored_experiment"] not in metrics["train_experiments"]
    assert metrics["test_experiment"] not in metrics["train_experiments"]
    assert metrics["seeds"] == [0] and metrics["tune_cpu"] is True
    assert set(metrics["methods"]) == set(METHODS)
    for method, summary in metrics["methods"].items():
        # every number is computed (the ranking is science, not a unit test)
        assert summary["n"] == 1
        for key in READOUTS:
            value = summary["mean"][key]
            assert np.isfinite(value) and -1.0 <= value <= 1.0, (method, key, value)
    assert metrics["seconds"]["total"] > 0 and metrics["machine"]["cpu_count"] >= 1
    assert "dynaclr" in metrics["source"]
    # the ablation trained from the same config except its positives
    fit = yaml.safe_load((out / "runs" / "dynaclr_seed0" / "configs" / "fit.yml").read_text())
    ablation = yaml.safe_load((out / "runs" / "same_frame_ablation_seed0" / "configs" / "fit.yml").read_text())
    assert ablation["data"]["init_args"].pop("same_frame_positives") is True
    assert fit["data"]["init_args"].pop("same_frame_positives") is False
    assert fit["model"] == ablation["model"] and fit["data"] == ablation["data"]
    for run in ("dynaclr_seed0", "same_frame_ablation_seed0"):
        assert (out / "runs" / run / "checkpoints" / "last.ckpt").is_file()
    for figure in ("readouts.png", "embeddings_pca.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the printed table: every method, with its read-outs
    for label in METHODS.values():
        assert label in done.stdout
    assert format_table(metrics) in done.stdout


def test_demo_is_a_dynaclr_subcommand():
    from dynaclr.cli import dynaclr

    runner = CliRunner()
    assert "demo" in runner.invoke(dynaclr, ["--help"]).output
    result = runner.invoke(dynaclr, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--output-dir", "--overwrite", "--fast", "--seeds", "--data-seed", "--score-on", "--tune_cpu"):
        assert option in result.output


def test_readme_table_is_the_committed_metrics():
    """The README's demo table is format_table of the committed metrics.json (bold marks aside), every seed."""
    from pathlib import Path

    app = Path(__file__).resolve().parents[1]
    metrics = json.loads((app / "examples/demo_results/metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["scored_experiment"] == metrics["test_experiment"]
    assert not metrics["fast"] and len(metrics["seeds"]) >= 3
    for method in ("dynaclr", "same_frame_ablation", "untrained_encoder"):
        assert sorted(metrics["methods"][method]["per_seed"]) == sorted(str(s) for s in metrics["seeds"])
    readme = (app / "README.md").read_text().replace("**", "")
    assert format_table(metrics, markdown=True) in readme
    assert f"at commit `{metrics['source']['git_commit'][:7]}`" in readme
    assert (app / "examples/demo_results/readouts.png").stat().st_size > 10_000
