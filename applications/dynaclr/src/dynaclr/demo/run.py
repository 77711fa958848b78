"""``dynaclr demo``: write synthetic experiments, train DynaCLR and its ablation, embed, score against baselines.

Training and prediction go through :func:`viscy_utils.cli.run_cli` with YAML files derived from
``examples/configs/demo.yml``, exactly as ``dynaclr fit -c`` / ``dynaclr predict -c`` would run them.

What is compared, on the same cells of one scored experiment that no model was trained on:

- **DynaCLR**: the config as shipped (positives are the same cell 0.5-1.5 h later);
- **tau = 0 ablation**: trained identically (same seed, data, anchors, batches, augmentations, epochs) except
  that the positive is the anchor's own frame under independent augmentations (SimCLR-style),
  ``same_frame_positives: true``;
- **untrained encoder**: the trained models' initial weights;
- **raw pixels** and **disc intensity features**: linear read-outs on the normalised patch itself.

Settings are chosen with ``--score-on validation``; reported runs score the test experiment once.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

try:  # the evaluation half needs the eval extra; fail here so `dynaclr demo` names it
    import anndata  # noqa: F401
    import sklearn  # noqa: F401
except ImportError as err:
    raise ImportError(f'dynaclr demo needs {err.name}: pip install "dynaclr[eval]"') from err

from dynaclr.demo.data import PRESETS, DemoDataset, write_demo_dataset
from dynaclr.demo.report import (
    READOUTS,
    format_table,
    plot_embeddings,
    plot_readouts,
    score_representation,
    split_by_experiment,
    summarise,
)
from dynaclr.evaluation.baselines import baseline_features, cell_patches
from dynaclr.run_configs import fit_run_config, predict_run_config, write_config

__all__ = ["DISC_RADII", "DemoResult", "demo_config_path", "main", "run_demo"]

#: discs of the hand-made features, in pixels: about the synthetic nucleus and the whole synthetic cell
DISC_RADII = {"nucleus": 3.0, "cell": 7.0}
#: the learned methods, trained or not, once per training seed
_ENCODERS = ("dynaclr", "same_frame_ablation", "untrained_encoder")
#: titles of the PCA panels
_PCA_TITLES = {"dynaclr": "DynaCLR", "same_frame_ablation": "tau = 0 ablation"}


def demo_config_path() -> Path:
    """Where ``demo.yml`` is: next to this module in a wheel, else ``examples/configs`` of the checkout.

    Raises
    ------
    FileNotFoundError
        If neither exists.
    """
    candidates = [
        Path(__file__).with_name("demo.yml"),
        Path(__file__).resolve().parents[3] / "examples" / "configs" / "demo.yml",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"demo.yml not found; looked in {[str(p) for p in candidates]}")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs and what it measured.

    Attributes
    ----------
    output_dir : pathlib.Path
        Root of everything below.
    fit_configs : dict of str to pathlib.Path
        Run name (``dynaclr_seed0``, ``same_frame_ablation_seed0``, ...) -> the Lightning config that trained it
        (``dynaclr fit -c`` reruns it).
    checkpoints : dict of str to pathlib.Path
        Run name -> trained model.
    metrics : pathlib.Path
        JSON with every read-out of every method and seed, the settings and the runtime.
    figure : pathlib.Path
        Bar chart of the read-outs (drawn from ``metrics.json`` alone).
    pca_figure : pathlib.Path
        PCA of the scored experiment's embeddings, DynaCLR and ablation (first seed).
    scores : dict
        Method -> ``{"per_seed", "n", "mean", "sd"}`` (:func:`dynaclr.demo.report.summarise`).
    seconds : float
        Wall time of the whole demo.
    """

    output_dir: Path
    fit_configs: dict
    checkpoints: dict
    metrics: Path
    figure: Path
    pca_figure: Path
    scores: dict
    seconds: float


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{output_dir} already exists and is not empty; choose another --output-dir or pass --overwrite"
            )
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def _fit_config(
    template: dict,
    run_dir: Path,
    experiments_yaml: Path,
    validation: str,
    max_epochs: int,
    seed: int = 0,
    same_frame_positives: bool = False,
) -> dict:
    """Fill the template with a run's paths, validation experiment, epochs, seed and positives (ablation)."""
    data = {
        "experiments_yaml": str(experiments_yaml),
        "val_experiments": [validation],
        "same_frame_positives": bool(same_frame_positives),
    }
    return fit_run_config(
        template,
        log_dir=run_dir / "logs",
        checkpoint_dir=run_dir / "checkpoints",
        seed=seed,
        max_epochs=max_epochs,
        data=data,
    )


def _predict_config(
    fit_config: dict, experiments: list[str], store: Path, checkpoint: Path | None, log_dir: Path
) -> dict:
    """Embed every cell of ``experiments`` with the fit config's model and data pipeline."""
    return predict_run_config(
        fit_config, store, log_dir=log_dir, checkpoint=checkpoint, data={"predict_experiments": list(experiments)}
    )


def _source_version() -> dict:
    """Return the package version and, in a git checkout, the commit (and whether tracked files differ)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        info = {"dynaclr": version("dynaclr")}
    except PackageNotFoundError:
        info = {"dynaclr": None}
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return info
    if commit.returncode == 0:
        info["git_commit"] = commit.stdout.strip()
        info["git_dirty"] = bool(status.stdout.strip())
    return info


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_demo(
    output_dir: str | Path = "dynaclr_demo",
    *,
    overwrite: bool = False,
    fast: bool = False,
    seeds: int | list[int] = 1,
    data_seed: int = 0,
    score_on: str = "test",
    max_epochs: int | None = None,
    tune_cpu: bool = False,
    echo=print,
) -> DemoResult:
    """Run the whole demo and return what it measured.

    Parameters
    ----------
    output_dir : str or pathlib.Path, default "dynaclr_demo"
        Folder for data, configs, logs, checkpoints, embeddings, figures and metrics.
    overwrite : bool, default False
        Replace a non-empty ``output_dir``; otherwise such a folder is an error.
    fast : bool, default False
        Smaller dataset and one epoch (a smoke run; the test uses it).
    seeds : int or list of int, default 1
        Training seeds of DynaCLR and of the ablation (and initial weights of the untrained encoder): ``n``
        runs seeds ``0 .. n-1``; a list runs those. Every seed run is reported.
    data_seed : int, default 0
        Seed of the synthetic data (the same data for every training seed).
    score_on : {"test", "validation"}, default "test"
        Experiment the read-outs are scored on: ``"validation"`` to choose settings, ``"test"`` for a
        reported run (score it once, after the settings are committed).
    max_epochs : int, optional
        Override the preset's number of epochs.
    tune_cpu : bool, default False
        Tune the CPU runtime first (:func:`viscy_utils.cpu_runtime.tune_cpu_runtime`, what ``dynaclr fit
        --tune_cpu`` does): process-wide allocator and OpenMP settings, so only when asked for. It takes effect
        only if torch is not loaded yet; on a busy machine it spares the time idle OpenMP threads spin.
    echo : callable, default print
        Receives the progress and summary lines.

    Returns
    -------
    DemoResult
        Paths and scores.

    Raises
    ------
    FileExistsError
        If ``output_dir`` is not empty and ``overwrite`` is False.
    ValueError
        If ``score_on`` or ``seeds`` is invalid.
    """
    if score_on not in ("test", "validation"):
        raise ValueError(f"score_on must be 'test' or 'validation', got {score_on!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must name at least one seed, each once; got {seeds!r}")

    if tune_cpu:
        from viscy_utils.cpu_runtime import tune_cpu_runtime

        # what `dynaclr fit --tune_cpu` does first, here before the data writer loads torch: OpenMP threads that
        # spin while waiting made training ~10x slower on a busy 2-core machine (read when torch loads)
        tune_cpu_runtime()
    # the CLI is driven from Python on purpose; Lightning warns whenever sys.argv also holds arguments
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    start, cpu_start, load_start = time.perf_counter(), _cpu_seconds(), os.getloadavg()
    output_dir = Path(output_dir).absolute()
    _prepare_output(output_dir, overwrite)
    preset = PRESETS[bool(fast)]
    epochs = max_epochs or preset["max_epochs"]
    timings: dict[str, float] = {}

    echo(f"[1/4] Writing 5 synthetic experiments to {output_dir / 'data'}")
    dataset = write_demo_dataset(output_dir / "data", seed=data_seed, **preset["data"])
    timings["data"] = time.perf_counter() - start
    scored = dataset.test if score_on == "test" else dataset.validation
    names = [*dataset.train_experiments, scored]
    echo(
        f"      training: {', '.join(dataset.train_experiments)}; "
        f"validation: {dataset.validation}; test: {dataset.test}"
    )
    echo(f"      scoring the {score_on} experiment {scored}")

    template_path = demo_config_path()
    template = yaml.safe_load(template_path.read_text())
    per_seed: dict[str, dict] = {m: {} for m in (*_ENCODERS, "raw_pixels", "disc_features")}
    fit_configs, checkpoints, pca = {}, {}, {}
    for i, seed in enumerate(seed_list):
        configs = {}
        for method, same_frame in (("dynaclr", False), ("same_frame_ablation", True)):
            run = f"{method}_seed{seed}"
            run_dir = output_dir / "runs" / run
            configs[method] = _fit_config(
                template, run_dir, dataset.experiments_yaml, dataset.validation, epochs, seed, same_frame
            )
            fit_configs[run] = write_config(configs[method], run_dir / "configs" / "fit.yml")
            what = "the tau = 0 ablation (same-frame positives)" if same_frame else "DynaCLR"
            echo(f"[2/4] Training {what}, seed {seed}, {epochs} epochs (`dynaclr fit -c {fit_configs[run]}`)")
            tick = time.perf_counter()
            _run_cli(["fit", "-c", str(fit_configs[run])])
            timings[f"train_{run}"] = time.perf_counter() - tick
            checkpoints[run] = run_dir / "checkpoints" / "last.ckpt"
            if not checkpoints[run].is_file():
                raise RuntimeError(f"training finished without writing {checkpoints[run]}")

        echo(f"[3/4] Embedding {', '.join(names)} with each encoder of seed {seed} and scoring")
        for method in _ENCODERS:
            run = f"{method}_seed{seed}"
            trained = method != "untrained_encoder"
            tick = time.perf_counter()
            labelled, cli = _embed(
                configs[method if trained else "dynaclr"],
                checkpoints[run] if trained else None,
                names,
                output_dir / "runs" / run,
                dataset,
            )
            per_seed[method][str(seed)] = _score(labelled, dataset.train_experiments, scored)
            timings[f"embed_score_{run}"] = time.perf_counter() - tick
            if i == 0 and method != "untrained_encoder":
                pca[_PCA_TITLES[method]] = labelled[scored]
        if i == 0:
            tick = time.perf_counter()
            patches = cell_patches(cli.datamodule)
            for method, features in baseline_features(patches.images, DISC_RADII).items():
                labelled = split_by_experiment(features, patches.index, dataset.annotations, names, source=method)
                per_seed[method]["-"] = _score(labelled, dataset.train_experiments, scored)
            del patches
            timings["baselines"] = time.perf_counter() - tick

    echo("[4/4] Summarising over seeds, figures")
    scores = {method: summarise(values) for method, values in per_seed.items()}
    seconds = time.perf_counter() - start
    metrics = {
        "split": score_on,
        "scored_experiment": scored,
        "train_experiments": dataset.train_experiments,
        "validation_experiment": dataset.validation,
        "test_experiment": dataset.test,
        "seeds": seed_list,
        "data_seed": data_seed,
        "fast": bool(fast),
        "tune_cpu": bool(tune_cpu),
        "settings": {
            "config": template_path.name,
            "max_epochs": epochs,
            "tau_range_hours": template["data"]["init_args"]["tau_range"],
            "ablation": "same_frame_positives: true (otherwise the DynaCLR config)",
            "data": {k: list(v) if isinstance(v, tuple) else v for k, v in preset["data"].items()},
            "disc_radii_px": DISC_RADII,
        },
        "readouts": {key: description for key, (_, description) in READOUTS.items()},
        "methods": scores,
        "source": _source_version(),
        "seconds": {"total": round(seconds, 1), **{k: round(v, 1) for k, v in timings.items()}},
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_seconds": round(_cpu_seconds() - cpu_start, 1),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    figure = plot_readouts(metrics, output_dir / "readouts.png")
    pca_figure = plot_embeddings(pca, output_dir / "embeddings_pca.png")
    result = DemoResult(
        output_dir=output_dir,
        fit_configs=fit_configs,
        checkpoints=checkpoints,
        metrics=metrics_path,
        figure=figure,
        pca_figure=pca_figure,
        scores=scores,
        seconds=seconds,
    )
    echo(_summary(result, metrics, template_path))
    return result


def _run_cli(args: list[str]):
    from viscy_utils.cli import run_cli

    return run_cli(args, prog="dynaclr")


def _embed(fit_config: dict, checkpoint: Path | None, names: list[str], run_dir: Path, dataset: DemoDataset):
    """``dynaclr predict`` every cell of ``names`` into ``run_dir/embeddings.zarr``; labelled AnnData per experiment."""
    import anndata

    store = run_dir / "embeddings.zarr"
    config = _predict_config(fit_config, names, store, checkpoint, run_dir / "logs" / "predict")
    cli = _run_cli(["predict", "-c", str(write_config(config, run_dir / "configs" / "predict.yml"))])
    adata = anndata.read_zarr(store)
    labelled = split_by_experiment(
        adata.X, adata.obs.reset_index(drop=True), dataset.annotations, names, source=str(store)
    )
    return labelled, cli


def _score(labelled: dict, train_experiments: list[str], scored: str):
    import anndata

    train = anndata.concat([labelled[n] for n in train_experiments], index_unique="-")
    return score_representation(train, labelled[scored])


def _summary(result: DemoResult, metrics: dict, template: Path) -> str:
    seeds = ", ".join(str(s) for s in metrics["seeds"])
    machine = metrics["machine"]
    load = "/".join(f"{x:.1f}" for x in machine["load_average_start"])
    return "\n".join(
        [
            "",
            f"DynaCLR demo finished in {result.seconds / 60:.1f} min "
            f"({machine['cpu_count']} CPUs, load average {load} at the start).",
            f"Scored on the {metrics['split']} experiment {metrics['scored_experiment']} (never trained on); "
            f"training seeds {seeds}; mean +- sd over seeds (higher is better everywhere):",
            format_table(metrics),
            "",
            f"  data, tracks, experiments.yml   {result.output_dir / 'data'}",
            f"  training configs (copy them)    {result.output_dir / 'runs' / '*' / 'configs'}",
            f"  config template                 {template}",
            f"  checkpoints, logs, embeddings   {result.output_dir / 'runs'}",
            f"  figures                         {result.figure}, {result.pca_figure}",
            f"  metrics                         {result.metrics}",
        ]
    )


@click.command("demo")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dynaclr_demo"),
    show_default=True,
    help="Folder for the data, configs, checkpoints, embeddings, figures and metrics.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it is not empty.")
@click.option("--fast", is_flag=True, help="Smaller data and one epoch (a quick smoke run).")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Training seeds of DynaCLR and the ablation (0 .. N-1); the table reports mean +- sd over them.",
)
@click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option(
    "--score-on",
    type=click.Choice(["test", "validation"]),
    default="test",
    show_default=True,
    help="Experiment to score: 'validation' while choosing settings, 'test' for a reported run.",
)
@click.option(
    "--tune_cpu",
    "--tune-cpu",
    "tune_cpu",
    is_flag=True,
    help="Tune the CPU runtime first, as `dynaclr fit --tune_cpu` (huge pages, heap reuse, no OpenMP spinning; "
    "much faster on a busy machine). Off by default; VISCY_TUNE_CPU=1 too.",
)
def main(
    output_dir: Path, overwrite: bool, fast: bool, seeds: int, data_seed: int, score_on: str, tune_cpu: bool
) -> None:
    """Quickstart: train DynaCLR on synthetic infection time-lapses (CPU, minutes) and score it against baselines.

    Writes synthetic experiments, trains DynaCLR and its tau = 0 (same-frame) ablation through the same
    Lightning CLI path as `dynaclr fit`, embeds an experiment no model was trained on, and reports linear
    read-outs of infection, time since infection onset and within-track temporal order for DynaCLR, the
    ablation, the untrained encoder, raw pixels and hand-made disc intensity features.
    """
    from viscy_utils.cli import split_tune_cpu

    try:
        run_demo(
            output_dir,
            overwrite=overwrite,
            fast=fast,
            seeds=seeds,
            data_seed=data_seed,
            score_on=score_on,
            tune_cpu=tune_cpu or split_tune_cpu([])[0],  # the switch, or VISCY_TUNE_CPU as for `dynaclr fit`
            echo=click.echo,
        )
    except FileExistsError as err:
        raise click.ClickException(str(err)) from err
