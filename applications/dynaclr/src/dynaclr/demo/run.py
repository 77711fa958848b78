"""``dynaclr demo``: write synthetic experiments, train DynaCLR through the CLI, embed, evaluate, plot.

Training and prediction go through :func:`viscy_utils.cli.run_cli` with YAML files derived from
``examples/configs/demo.yml``, exactly as ``dynaclr fit -c`` / ``dynaclr predict -c`` would run them.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import yaml

try:  # the evaluation half needs the eval extra; fail here so `dynaclr demo` names it
    import anndata  # noqa: F401
    import sklearn  # noqa: F401
except ImportError as err:
    raise ImportError(f'dynaclr demo needs {err.name}: pip install "dynaclr[eval]"') from err

from dynaclr.demo.data import DEMO_EXPERIMENTS, DemoDataset, write_demo_dataset
from dynaclr.demo.report import EmbeddingScores, label_embeddings, plot_embeddings, score_embeddings

__all__ = ["DemoResult", "demo_config_path", "evaluate", "main", "run_demo"]

#: what the synthetic cells look like (both presets). Cells stay half a patch from the border so every patch is
#: centred on its cell; infection moves the reporter into the nucleus at constant total intensity, expression varies
#: from cell to cell, and short-lived puncta as bright as an infected nucleus come and go (one per cell every other
#: frame on average), so a single frame is ambiguous and the encoder must learn what persists; no per-track phase
#: texture gives away cell identity.
_DATA = {
    "yx_size": (128, 128),
    "border_margin": 17,
    "infection_phenotype": "relocalisation",
    "reporter_brightness_sd": 0.5,
    "transient_puncta": 0.5,
    "texture_contrast": 0.0,
    "division_probability": 0.04,
}
#: (dataset size, training length) of the full and the --fast demo
_PRESETS = {
    False: {"data": {**_DATA, "n_timepoints": 12, "fovs_per_well": 2, "cells_per_fov": 10}, "max_epochs": 10},
    # twice the puncta: on the small --fast data the harder single frames keep the trained-vs-untrained gap wide
    True: {
        "data": {**_DATA, "n_timepoints": 10, "fovs_per_well": 1, "cells_per_fov": 8, "transient_puncta": 1.0},
        "max_epochs": 5,
    },
}


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
    fit_config : pathlib.Path
        The Lightning config that trained the model (``dynaclr fit -c`` reruns it).
    checkpoint : pathlib.Path
        The trained model.
    figure : pathlib.Path
        PCA of the held-out embeddings, trained and untrained encoder.
    metrics : pathlib.Path
        JSON with the figures below and the runtime.
    trained, untrained : EmbeddingScores
        Scores of the trained and of the randomly initialised encoder (the trained model's initial weights).
    seconds : float
        Wall time of the whole demo.
    """

    output_dir: Path
    fit_config: Path
    checkpoint: Path
    figure: Path
    metrics: Path
    trained: EmbeddingScores
    untrained: EmbeddingScores
    seconds: float


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{output_dir} already exists and is not empty; choose another --output-dir or pass --overwrite"
            )
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def _fit_config(template: dict, output_dir: Path, experiments_yaml: Path, held_out: str, max_epochs: int) -> dict:
    config = copy.deepcopy(template)
    trainer = config["trainer"]
    trainer["max_epochs"] = max_epochs
    trainer["logger"]["init_args"]["save_dir"] = str(output_dir / "logs")
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(output_dir / "checkpoints")
    data = config["data"]["init_args"]
    data["experiments_yaml"] = str(experiments_yaml)
    data["val_experiments"] = [held_out]
    return config


def _predict_config(fit_config: dict, experiment: str, store: Path, checkpoint: Path | None, log_dir: Path) -> dict:
    """Embed every cell of one experiment with the fit config's model and data pipeline."""
    config = copy.deepcopy(fit_config)
    trainer = config["trainer"]
    for key in ("max_epochs", "log_every_n_steps", "num_sanity_val_steps", "limit_val_batches"):
        trainer.pop(key, None)
    trainer["logger"] = False
    # without a logger the CLI saves its config.yaml in default_root_dir (the working directory by default)
    trainer["default_root_dir"] = str(log_dir)
    trainer["enable_progress_bar"] = False
    trainer["callbacks"] = [
        {
            "class_path": "viscy_utils.callbacks.embedding_writer.EmbeddingWriter",
            "init_args": {"output_path": str(store)},
        }
    ]
    config["data"]["init_args"]["predict_experiments"] = [experiment]
    config["return_predictions"] = False
    if checkpoint is not None:
        config["ckpt_path"] = str(checkpoint)
    return config


def _write_yaml(config: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(
    output_dir: str | Path = "dynaclr_demo",
    *,
    overwrite: bool = False,
    fast: bool = False,
    seed: int = 0,
    max_epochs: int | None = None,
    echo=print,
) -> DemoResult:
    """Run the whole demo and return what it measured.

    Parameters
    ----------
    output_dir : str or pathlib.Path, default "dynaclr_demo"
        Folder for data, configs, logs, checkpoint, embeddings, figure and metrics.
    overwrite : bool, default False
        Replace a non-empty ``output_dir``; otherwise such a folder is an error.
    fast : bool, default False
        Smaller dataset and fewer epochs (about a quarter of the runtime; the test uses it).
    seed : int, default 0
        Seed of the synthetic data.
    max_epochs : int, optional
        Override the preset's number of epochs.
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
    """
    from viscy_utils.cli import run_cli

    # the CLI is driven from Python on purpose; Lightning warns whenever sys.argv also holds arguments
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    start = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    _prepare_output(output_dir, overwrite)
    preset = _PRESETS[bool(fast)]

    echo(f"[1/4] Writing {len(DEMO_EXPERIMENTS)} synthetic experiments to {output_dir / 'data'}")
    dataset = write_demo_dataset(output_dir / "data", seed=seed, **preset["data"])

    template_path = demo_config_path()
    fit_config = _fit_config(
        yaml.safe_load(template_path.read_text()),
        output_dir,
        dataset.experiments_yaml,
        dataset.held_out,
        max_epochs or preset["max_epochs"],
    )
    fit_path = _write_yaml(fit_config, output_dir / "configs" / "fit.yml")
    echo(f"[2/4] Training DynaCLR on {', '.join(dataset.train_experiments)} with the config {template_path}")
    echo(f"      (paths filled in: {fit_path}; rerun with `dynaclr fit -c {fit_path}`)")
    run_cli(["fit", "-c", str(fit_path)], prog="dynaclr")
    checkpoint = output_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise RuntimeError(f"training finished without writing {checkpoint}")

    scores, figure = evaluate(output_dir, dataset, fit_config, checkpoint, echo=echo)
    seconds = time.perf_counter() - start
    metrics = output_dir / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "held_out_experiment": dataset.held_out,
                "train_experiments": dataset.train_experiments,
                "trained": asdict(scores["trained"]),
                "untrained": asdict(scores["untrained"]),
                "seconds": round(seconds, 1),
                "fast": bool(fast),
                "seed": seed,
            },
            indent=2,
        )
    )
    result = DemoResult(
        output_dir=output_dir,
        fit_config=fit_path,
        checkpoint=checkpoint,
        figure=figure,
        metrics=metrics,
        trained=scores["trained"],
        untrained=scores["untrained"],
        seconds=seconds,
    )
    echo(_summary(result, dataset.held_out, template_path))
    return result


def evaluate(
    output_dir: Path, dataset: DemoDataset, fit_config: dict, checkpoint: Path, echo=print
) -> tuple[dict[str, EmbeddingScores], Path]:
    """Embed every experiment with the trained and the untrained encoder, score both and plot.

    Parameters
    ----------
    output_dir : pathlib.Path
        The demo's output folder (embeddings, predict configs and the figure go there).
    dataset : DemoDataset
        The synthetic experiments.
    fit_config : dict
        The training config; prediction uses its model and data sections.
    checkpoint : pathlib.Path
        The trained model; the untrained encoder is the same model with the seeded initial weights.
    echo : callable, default print
        Receives progress lines.

    Returns
    -------
    tuple
        Scores keyed ``"trained"``/``"untrained"`` and the figure's path.
    """
    import anndata

    from viscy_utils.cli import run_cli

    echo("[3/4] Embedding every cell with the trained and the untrained (random-init) encoder")
    names = [*dataset.train_experiments, dataset.held_out]
    stores: dict[str, dict[str, Path]] = {}
    for label, ckpt in (("trained", checkpoint), ("untrained", None)):
        stores[label] = {}
        for name in names:
            store = output_dir / "embeddings" / label / f"{name}.zarr"
            config = _predict_config(fit_config, name, store, ckpt, output_dir / "logs" / f"predict_{label}_{name}")
            config_path = _write_yaml(config, output_dir / "configs" / f"predict_{label}_{name}.yml")
            run_cli(["predict", "-c", str(config_path)], prog="dynaclr")
            stores[label][name] = store

    echo("[4/4] Linear probe of infection state (train -> held-out experiment), temporal smoothness, figure")
    truth = dataset.annotations
    scores, held_out_embeddings = {}, {}
    for label, by_name in stores.items():
        labelled = {n: label_embeddings(p, truth[truth["experiment"] == n]) for n, p in by_name.items()}
        train = anndata.concat([labelled[n] for n in dataset.train_experiments], index_unique="-")
        held_out_embeddings[label] = labelled[dataset.held_out]
        scores[label] = score_embeddings(train, labelled[dataset.held_out])
    held = next(e for e in DEMO_EXPERIMENTS if e.name == dataset.held_out)
    figure = plot_embeddings(
        held_out_embeddings, output_dir / "embeddings_pca.png", held.interval_minutes, held.start_hpi
    )
    return scores, figure


def _summary(result: DemoResult, held_out: str, template: Path) -> str:
    t, u = result.trained, result.untrained
    return "\n".join(
        [
            "",
            f"DynaCLR demo finished in {result.seconds / 60:.1f} min. Held-out experiment: {held_out}",
            f"  {'':28s}{'trained':>10s}{'untrained':>12s}",
            f"  {'infection balanced accuracy':28s}{t.balanced_accuracy:10.3f}{u.balanced_accuracy:12.3f}"
            "   (higher is better)",
            f"  {'temporal smoothness ratio':28s}{t.smoothness:10.3f}{u.smoothness:12.3f}   (lower is smoother)",
            "",
            f"  data, tracks, experiments.yml   {result.output_dir / 'data'}",
            f"  training config (copy it)       {result.fit_config}   (template: {template})",
            f"  checkpoint                      {result.checkpoint}",
            f"  TensorBoard logs                {result.output_dir / 'logs'}",
            f"  embeddings (AnnData zarr)       {result.output_dir / 'embeddings'}",
            f"  figure                          {result.figure}",
            f"  metrics                         {result.metrics}",
        ]
    )


@click.command("demo")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dynaclr_demo"),
    show_default=True,
    help="Folder for the data, configs, checkpoint, embeddings, figure and metrics.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it is not empty.")
@click.option("--fast", is_flag=True, help="Smaller data and fewer epochs (a quick smoke run).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
def main(output_dir: Path, overwrite: bool, fast: bool, seed: int) -> None:
    """Quickstart: train DynaCLR on synthetic infection time-lapses (CPU, minutes) and evaluate it.

    Writes synthetic experiments, trains through the same Lightning CLI path as `dynaclr fit`, embeds
    a held-out experiment, and reports infection-state accuracy of a linear probe and temporal
    smoothness against the untrained encoder, with a PCA figure.
    """
    try:
        run_demo(output_dir, overwrite=overwrite, fast=fast, seed=seed, echo=click.echo)
    except FileExistsError as err:
        raise click.ClickException(str(err)) from err
