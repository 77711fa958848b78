"""DynaCLR on a real time-lapse: HaCaT FUCCI cells with TrackMate lineages, scored on a held-out lineage.

The data ship in the source distribution of ``fucciphase`` 0.1.0 (BSD-3-Clause,
https://github.com/Synthetic-Physiology-Lab/fucciphase): ``examples/reproducibility/inputs/`` holds
``downscaled_hacat.ome.tif`` (121 frames, 15 min apart, 256 x 256 px at 0.544 um/px, channels: magenta
FUCCI reporter (S/G2/M), cyan FUCCI reporter (G1), nucleus labels) and ``merged_linked.ome.xml``
(TrackMate lineages, tracked on the 2048 px original at 0.068 um/px).

Steps (each printed with the equivalent command):

1. fetch the sdist with ``pip download --no-deps --no-binary :all: fucciphase==0.1.0`` (cached);
2. import the movie (``viscy import-images``) and the tracks (``viscy import-tracks``) into an HCS plate
   and per-FOV tracks CSVs, one tracks folder per split of the lineages (train / validation / test);
3. compute normalisation statistics (``dynaclr preprocess``);
4. for each seed: train DynaCLR on the training lineage (``dynaclr fit -c fit.yml``, validation loss on the
   validation lineages), embed every cell with the trained and the untrained encoder (``dynaclr predict``);
5. score cell-cycle phase (G1, G1/S, S/G2/M, called from the tracks' FUCCI intensities with fucciphase's
   rule) and hours since division on the held-out test lineage with linear read-outs trained on the
   training lineage, for DynaCLR, the untrained encoder, a raw-pixel probe and hand-made intensity
   features in nucleus- and cell-sized discs; write ``metrics.json`` and print the table.

Usage::

    python applications/dynaclr/examples/fucci/run_fucci.py --output-dir fucci_output
    python applications/dynaclr/examples/fucci/run_fucci.py --output-dir fucci_short --max-frames 40 --seeds 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dynaclr.run_configs import fit_run_config, predict_run_config, write_config

HERE = Path(__file__).resolve().parent
PACKAGE = "fucciphase==0.1.0"
INPUTS = "examples/reproducibility/inputs"
MOVIE, TRACKS_XML = "downscaled_hacat.ome.tif", "merged_linked.ome.xml"
#: the movie's pixel size (fucciphase's example: ``fucciphase-napari ... --pixel_size 0.544``)
PIXEL_SIZE_UM = 0.544
INTERVAL_MINUTES = 15.0
#: TrackMate spot features: MEAN_INTENSITY_CH1 is the magenta reporter, CH2 the cyan one (fucciphase's README:
#: ``-m MEAN_INTENSITY_CH1 -c MEAN_INTENSITY_CH2``)
CHANNELS = ("magenta", "cyan", "labels")
MAGENTA, CYAN = "MEAN_INTENSITY_CH1", "MEAN_INTENSITY_CH2"
#: the label image is the third channel: a spot's mean intensity there is its nucleus label
LABEL = "MEAN_INTENSITY_CH3"
FOV = "A/1/0"
#: lineages (TrackMate TRACK_ID) of each split, fixed before any run: the two large lineages (7 cells each, two
#: rounds of division) train and test; the three single-cell tracks validate
SPLITS = {"train": (0,), "val": (2, 3, 10), "test": (1,)}
#: median TrackMate spot radius 7.4 um = 13.6 px; a HaCaT cell is about twice the nucleus
DISC_RADII_PX = {"nucleus": 13.0, "cell": 26.0}
PHASES = ("G1", "G1/S", "S/G2/M")


class DataUnavailable(RuntimeError):
    """The fucciphase source distribution could not be downloaded."""


def echo(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------- data
def _pip() -> list[str]:
    """This interpreter's pip, else a pip on PATH (uv environments come without pip)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise DataUnavailable(f"pip is needed to download {PACKAGE}; install it (e.g. `uv pip install pip`)")
    return [found]


def fetch(cache_dir: Path) -> Path:
    """Download the fucciphase sdist once and extract the two input files; return their folder."""
    inputs = cache_dir / "inputs"
    if all((inputs / name).is_file() for name in (MOVIE, TRACKS_XML)):
        return inputs
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [*_pip(), "download", "--no-deps", "--no-binary", ":all:", PACKAGE, "-d", str(cache_dir), "--quiet"]
    echo(f"      $ pip {' '.join(command[command.index('download') :])}")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataUnavailable(f"could not run pip download {PACKAGE}: {err}") from err
    archives = sorted(cache_dir.glob("fucciphase-0.1.0.tar.gz"))
    if result.returncode != 0 or not archives:
        raise DataUnavailable(
            f"pip download {PACKAGE} failed (exit {result.returncode}); is PyPI reachable and pip installed?\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    inputs.mkdir(exist_ok=True)
    with tarfile.open(archives[0]) as archive:
        for name in (MOVIE, TRACKS_XML, "LICENSE"):
            folder = "" if name == "LICENSE" else f"{INPUTS}/"
            member = archive.getmember(f"fucciphase-0.1.0/{folder}{name}")
            with archive.extractfile(member) as source, open(inputs / name, "wb") as target:
                shutil.copyfileobj(source, target)
    return inputs


def fucci_phases(tracks: pd.DataFrame, window: int = 7, threshold: float = 0.1) -> pd.Series:
    """Cell-cycle phase of every detection, with the rule of fucciphase 0.1.0's default CLI.

    Per cell (track), a centred moving average of ``window`` frames of each reporter's mean nuclear
    intensity; min-max normalisation over all detections; a reporter is ON above ``threshold``. Cyan on
    (or both off): G1; both on: G1/S; magenta only: S/G2/M (fucciphase's FUCCI(SA) sensor).
    """
    ordered = tracks.sort_values(["track_id", "t"])
    on = {}
    for column in (CYAN, MAGENTA):
        smooth = ordered.groupby("track_id")[column].transform(
            lambda v: v.rolling(window, center=True, min_periods=1).mean()
        )
        normalised = (smooth - smooth.min()) / (smooth.max() - smooth.min())
        on[column] = (normalised > threshold).reindex(tracks.index)
    phase = np.where(on[MAGENTA] & on[CYAN], "G1/S", np.where(on[MAGENTA], "S/G2/M", "G1"))
    return pd.Series(phase, index=tracks.index, name="phase")


def hours_since_birth(tracks: pd.DataFrame) -> pd.Series:
    """Hours since the division that made the cell; NaN for cells whose birth was not filmed."""
    first = tracks.groupby("track_id")["t"].transform("min")
    born = tracks["parent_track_id"] >= 0
    return ((tracks["t"] - first) * INTERVAL_MINUTES / 60).where(born).rename("hours_since_birth")


def on_own_label(plate: Path, tracks: pd.DataFrame) -> str:
    """How many imported centroids land on the nucleus label TrackMate measured them on (checks the pixel size)."""
    from iohub.ngff import open_ome_zarr

    with open_ome_zarr(plate, layout="hcs", mode="r") as opened:
        labels = opened[FOV]["0"][:, CHANNELS.index("labels"), 0]
    inside = tracks[tracks["t"] < labels.shape[0]]
    y = inside["y"].round().astype(int).clip(0, labels.shape[1] - 1)
    x = inside["x"].round().astype(int).clip(0, labels.shape[2] - 1)
    hits = int((labels[inside["t"], y, x] == inside[LABEL]).sum())
    return f"{hits} / {len(inside)}"


@dataclass(frozen=True)
class Prepared:
    plate: Path
    experiments_fit: Path
    experiments_all: Path
    truth: pd.DataFrame  # track_id, t, split, phase, hours_since_birth, lineage


def prepare(inputs: Path, data_dir: Path, max_frames: int | None) -> Prepared:
    """Import movie and tracks (cropped to ``max_frames``), split the lineages, write the experiments files."""
    from viscy_data.importers import import_tiff, read_trackmate_xml, write_tracks_csv

    movie = inputs / MOVIE
    if max_frames is not None:
        import tifffile

        cropped = data_dir / f"first_{max_frames}_frames.ome.tif"
        with tifffile.TiffFile(movie) as tif:
            frames = tif.series[0].asarray()[:max_frames]
        tifffile.imwrite(cropped, frames, metadata={"axes": "TCYX"})
        movie = cropped
    plate = data_dir / "hacat_fucci.zarr"
    names = " ".join(CHANNELS)
    echo(f"      $ viscy import-images {movie.name} --plate {plate} --fov {FOV} --channel-names {names} "
         f"--pixel-size {PIXEL_SIZE_UM}")  # fmt: skip
    import_tiff(movie, plate, FOV, channel_names=CHANNELS, pixel_size=PIXEL_SIZE_UM, progress=False)

    echo(f"      $ viscy import-tracks {TRACKS_XML} -o <tracks> --fov {FOV} --pixel-size {PIXEL_SIZE_UM} "
         f"--spot-feature {MAGENTA} --spot-feature {CYAN}  (then split by lineage)")  # fmt: skip
    features = [MAGENTA, CYAN, LABEL]
    tracks = read_trackmate_xml(inputs / TRACKS_XML, pixel_size=PIXEL_SIZE_UM, spot_features=features)
    echo(f"      centroids on their own nucleus label: {on_own_label(plate, tracks)}")
    tracks["phase"] = fucci_phases(tracks)  # on the whole movie, as fucciphase calls them
    tracks["hours_since_birth"] = hours_since_birth(tracks)
    if max_frames is not None:
        tracks = tracks[tracks["t"] < max_frames].reset_index(drop=True)
    lineage_split = {lineage: split for split, lineages in SPLITS.items() for lineage in lineages}
    tracks["split"] = tracks["trackmate_track_id"].map(lineage_split)
    unassigned = sorted(tracks.loc[tracks["split"].isna(), "trackmate_track_id"].unique())
    if unassigned:
        raise RuntimeError(f"lineages {unassigned} of {TRACKS_XML} are in no split; update SPLITS")
    experiment = {
        "data_path": str(plate),
        "channel_names": list(CHANNELS),
        "source_channel": ["magenta", "cyan"],
        "condition_wells": {"hacat": ["A/1"]},
        "interval_minutes": INTERVAL_MINUTES,
    }
    entries = {}
    for split in ("train", "val", "test", "all"):
        rows = tracks if split == "all" else tracks[tracks["split"] == split]
        root = data_dir / f"tracks_{split}"
        write_tracks_csv(rows.drop(columns=["phase", "hours_since_birth", "split"]), root, FOV)
        entries[split] = {"name": f"hacat_{split}", "tracks_path": str(root), **experiment}
    experiments_fit = data_dir / "experiments_fit.yml"
    experiments_fit.write_text(yaml.safe_dump({"experiments": [entries["train"], entries["val"]]}, sort_keys=False))
    experiments_all = data_dir / "experiments_all.yml"
    experiments_all.write_text(yaml.safe_dump({"experiments": [entries["all"]]}, sort_keys=False))
    truth = tracks[["track_id", "t", "split", "phase", "hours_since_birth", "trackmate_track_id"]]
    return Prepared(plate, experiments_fit, experiments_all, truth)


# ------------------------------------------------------------------------------------------- training
def fit_config(template: dict, out: Path, experiments_fit: Path, seed: int, max_epochs: int | None) -> dict:
    return fit_run_config(
        template,
        log_dir=out / "logs",
        checkpoint_dir=out / "checkpoints" / f"seed{seed}",
        seed=seed,
        max_epochs=max_epochs,
        log_version=f"fit_seed{seed}",
        data={"experiments_yaml": str(experiments_fit)},
    )


def predict_config(fit: dict, experiments_all: Path, store: Path, checkpoint: Path | None, log_dir: Path) -> dict:
    data = {"experiments_yaml": str(experiments_all), "val_experiments": [], "predict_experiments": ["hacat_all"]}
    return predict_run_config(fit, store, log_dir=log_dir, checkpoint=checkpoint, data=data)


def labelled(index: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    keyed = index[["track_id", "t"]].astype(np.int64)
    merged = keyed.merge(truth, on=["track_id", "t"], how="left", validate="one_to_one")
    if merged["phase"].isna().any():
        raise RuntimeError(f"{int(merged['phase'].isna().sum())} embedded cells have no ground truth")
    return merged


def score(features: np.ndarray, cells: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Phase probe (validation and test balanced accuracy) and hours-since-birth read-out (test Spearman).

    The read-outs are fitted on the training lineage only (regularisation by grouped cross-validation
    over its cells) and applied unchanged to the validation and the test lineages.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import balanced_accuracy_score

    from dynaclr.evaluation.baselines import fit_linear_probe, fit_linear_readout

    split = cells["split"].to_numpy()
    train, val, test = (split == "train"), (split == "val"), (split == "test")
    phase = cells["phase"].to_numpy()
    groups = cells["track_id"].to_numpy()
    probe = fit_linear_probe(features[train], phase[train], groups[train], seed)
    result = {
        "val_phase_balanced_accuracy": balanced_accuracy_score(phase[val], probe.predict(features[val])),
        "test_phase_balanced_accuracy": balanced_accuracy_score(phase[test], probe.predict(features[test])),
    }
    hours = cells["hours_since_birth"].to_numpy()
    born_train, born_test = train & np.isfinite(hours), test & np.isfinite(hours)
    if born_train.sum() > 10 and born_test.sum() > 10 and len(np.unique(groups[born_train])) > 1:
        readout = fit_linear_readout(features[born_train], hours[born_train], groups[born_train])
        rho = spearmanr(readout.predict(features[born_test]), hours[born_test]).statistic
        result["test_hours_since_birth_spearman"] = rho
    return {k: round(float(v), 4) for k, v in result.items()}


def patch_baselines(datamodule) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Raw pixels and disc intensity statistics of the very patches the encoder embeds.

    ``datamodule`` is the one a ``dynaclr predict`` run used (its reader, normalisation and crop).
    """
    from dynaclr.evaluation.baselines import baseline_features, cell_patches

    patches = cell_patches(datamodule)
    return baseline_features(patches.images, DISC_RADII_PX), patches.index


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


def summary_table(methods: dict[str, list[dict]]) -> str:
    columns = ("val_phase_balanced_accuracy", "test_phase_balanced_accuracy", "test_hours_since_birth_spearman")
    header = f"  {'method':28s}{'runs':>5s}  {'val phase bal. acc.':>22s}  {'test phase bal. acc.':>22s}"
    header += f"  {'test hours-since-birth rho':>28s}"
    lines = [header]
    for name, runs in methods.items():
        cells = [mean_sd([run.get(c) for run in runs]) for c in columns]
        lines.append(f"  {name:28s}{len(runs):5d}  {cells[0]:>22s}  {cells[1]:>22s}  {cells[2]:>28s}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def run(
    output_dir: Path,
    cache_dir: Path,
    seeds: list[int],
    max_frames: int | None = None,
    max_epochs: int | None = None,
    overwrite: bool = False,
    config_path: Path = HERE / "fit.yml",
) -> dict:
    """Run the example end to end and return what ``metrics.json`` holds."""
    import anndata

    from viscy_utils.cli import run_cli

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    # short crops leave some phases out of a split; balanced accuracy then averages over the phases present
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
    start = time.perf_counter()
    output_dir = output_dir.absolute()
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} is not empty; choose another --output-dir or pass --overwrite")
        shutil.rmtree(output_dir)
    data_dir = output_dir / "data"
    data_dir.mkdir(parents=True)

    echo(f"[1/5] Fetching {PACKAGE} (source distribution, BSD-3-Clause) into {cache_dir}")
    inputs = fetch(cache_dir)
    echo(f"[2/5] Importing the movie and the TrackMate lineages into {data_dir}")
    prepared = prepare(inputs, data_dir, max_frames)
    counts = pd.crosstab(prepared.truth["split"], prepared.truth["phase"])
    echo("      cells x frames per split and phase:\n" + "\n".join("        " + r for r in str(counts).splitlines()))
    echo(f"[3/5] $ dynaclr preprocess --data_path {prepared.plate} --channel_names magenta cyan")
    run_cli(["preprocess", "--data_path", str(prepared.plate), "--channel_names", "[magenta, cyan]"], prog="dynaclr")

    template = yaml.safe_load(Path(config_path).read_text())
    methods: dict[str, list[dict]] = {"DynaCLR (trained)": [], "untrained encoder": []}
    for seed in seeds:
        config = fit_config(template, output_dir, prepared.experiments_fit, seed, max_epochs)
        path = write_config(config, output_dir / "configs" / f"fit_seed{seed}.yml")
        echo(f"[4/5] seed {seed}: $ dynaclr fit -c {path}")
        run_cli(["fit", "-c", str(path)], prog="dynaclr")
        checkpoint = output_dir / "checkpoints" / f"seed{seed}" / "last.ckpt"
        for label, ckpt in (("DynaCLR (trained)", checkpoint), ("untrained encoder", None)):
            tag = "trained" if ckpt is not None else "untrained"
            store = output_dir / "embeddings" / f"{tag}_seed{seed}.zarr"
            log_dir = output_dir / "logs" / f"predict_{tag}_seed{seed}"
            predict = predict_config(config, prepared.experiments_all, store, ckpt, log_dir)
            path = write_config(predict, output_dir / "configs" / f"predict_{tag}_seed{seed}.yml")
            echo(f"      $ dynaclr predict -c {path}")
            predicted = run_cli(["predict", "-c", str(path)], prog="dynaclr")
            adata = anndata.read_zarr(store)
            cells = labelled(adata.obs.reset_index(drop=True), prepared.truth)
            methods[label].append({"seed": seed, **score(np.asarray(adata.X), cells, seed)})
            echo(f"      {label}: {methods[label][-1]}")

    echo("[5/5] Baselines on the same patches: raw-pixel probe, intensity statistics in nucleus/cell discs")
    features, index = patch_baselines(predicted.datamodule)
    cells = labelled(index, prepared.truth)
    methods["raw-pixel linear probe"] = [score(features["raw_pixels"], cells)]
    methods["disc intensity features"] = [score(features["disc_features"], cells)]

    seconds = time.perf_counter() - start
    metrics = {
        "data": f"{PACKAGE} {INPUTS}: {MOVIE}, {TRACKS_XML}",
        "frames": int(prepared.truth["t"].max() + 1),
        "splits": {k: list(v) for k, v in SPLITS.items()},
        "cells_per_split_and_phase": {s: counts.loc[s].to_dict() for s in counts.index},
        "seeds": seeds,
        "config": Path(config_path).name if Path(config_path).parent == HERE else str(config_path),
        "max_epochs": max_epochs or template["trainer"]["max_epochs"],
        "methods": methods,
        "seconds": round(seconds, 1),
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    echo("")
    echo(f"FUCCI example finished in {seconds / 60:.1f} min (train lineage {SPLITS['train']}, "
         f"validation {SPLITS['val']}, held-out test {SPLITS['test']}; mean +- sd over seeds {seeds})")  # fmt: skip
    echo(summary_table(methods))
    echo(f"  metrics: {output_dir / 'metrics.json'}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("fucci_output"))
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "viscy" / "fucciphase-0.1.0",
        help="where the downloaded sdist and the extracted inputs are kept",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-frames", type=int, help="use only the first N frames (a quick run)")
    parser.add_argument("--max-epochs", type=int, help="override the epochs of the training config")
    parser.add_argument(
        "--config", type=Path, default=HERE / "fit.yml", help="training config (paths and seed are filled in)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    try:
        run(
            args.output_dir,
            args.cache_dir,
            args.seeds,
            args.max_frames,
            args.max_epochs,
            args.overwrite,
            args.config,
        )
    except DataUnavailable as err:
        print(f"data unavailable: {err}", file=sys.stderr)
        return 3
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
