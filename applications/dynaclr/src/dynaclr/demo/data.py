"""The demo's synthetic multi-experiment dataset: plates, tracks, annotations and ``experiments.yml``.

Every experiment is a plate written by :func:`viscy_data.synthetic.write_synthetic_plate`: uninfected
wells ``A/*`` and infected wells ``B/*``, dividing cells with lineage, normalisation statistics on every
FOV. In the infected wells each cell lineage is infected at its own time (or never), and the infection
phenotype then develops over a few hours. Experiments differ like real acquisitions of different
reporters on different days: reporter channel name, extra channels, imaging interval, camera noise,
detector gain, background and blur. The experiments are split three ways: training, one validation
experiment (to choose settings) and one test experiment (scored once per reported run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

__all__ = ["DemoDataset", "DemoExperiment", "DEMO_EXPERIMENTS", "PRESETS", "SYNTHETIC_CELLS", "write_demo_dataset"]

UNINFECTED_WELLS = ("A/1", "A/2")
INFECTED_WELLS = ("B/1", "B/2")


@dataclass(frozen=True)
class DemoExperiment:
    """One synthetic acquisition.

    Attributes
    ----------
    name : str
        Experiment name (``experiments.yml``).
    channel_names : tuple of str
        Channels of the plate, phase first; the second is the infection reporter used for training.
    interval_minutes : float
        Time between frames.
    start_hpi : float
        Hours post infection at frame 0.
    infection_onset : int
        First frame at which cells of the infected wells can be infected.
    organelle, date : str
        Metadata copied to ``experiments.yml``.
    noise_sd : float, default 0.05
        Camera noise of the acquisition.
    reporter_gain, background, blur_sigma : float
        Detector gain and background of the fluorescence channels, and optical blur (pixels) of the
        acquisition (:func:`viscy_data.synthetic.write_synthetic_plate`).
    """

    name: str
    channel_names: tuple[str, ...]
    interval_minutes: float
    start_hpi: float
    infection_onset: int
    organelle: str = ""
    date: str = ""
    noise_sd: float = 0.05
    reporter_gain: float = 1.0
    background: float = 0.1
    blur_sigma: float = 0.0

    def frames(self, hours: float) -> int:
        """Count this experiment's frames in ``hours``."""
        return int(round(hours * 60 / self.interval_minutes))


#: the training experiments, then the validation experiment, then the test experiment (both never trained on);
#: validation and test differ from every training acquisition and from each other in noise, gain, background and blur
DEMO_EXPERIMENTS = (
    DemoExperiment(
        "2024_01_10_SEC61_GFP", ("Phase3D", "GFP"), 30.0, 2.0, 3, "endoplasmic_reticulum", "2024-01-10", noise_sd=0.03
    ),
    DemoExperiment(
        "2024_02_21_TOMM20_RFP",
        ("Phase3D", "RFP", "Mito"),
        20.0,
        1.0,
        4,
        "mitochondria",
        "2024-02-21",
        noise_sd=0.06,
        reporter_gain=0.6,
        background=0.2,
        blur_sigma=0.5,
    ),
    DemoExperiment(
        "2024_03_05_G3BP1_mCherry",
        ("Phase3D", "mCherry"),
        30.0,
        3.0,
        2,
        "stress_granules",
        "2024-03-05",
        noise_sd=0.1,
        reporter_gain=1.5,
        background=0.05,
    ),
    DemoExperiment(
        "2024_03_27_NPM1_mScarlet",
        ("Phase3D", "mScarlet"),
        30.0,
        1.5,
        3,
        "nucleolus",
        "2024-03-27",
        noise_sd=0.12,
        reporter_gain=0.8,
        background=0.15,
        blur_sigma=0.7,
    ),
    DemoExperiment(
        "2024_04_18_NS3_mNeonGreen",
        ("Phase3D", "mNeonGreen"),
        30.0,
        2.5,
        3,
        "virus",
        "2024-04-18",
        noise_sd=0.12,
        reporter_gain=1.2,
        background=0.3,
        blur_sigma=0.5,
    ),
)


@dataclass(frozen=True)
class DemoDataset:
    """What :func:`write_demo_dataset` wrote.

    Attributes
    ----------
    experiments_yaml : pathlib.Path
        The experiments file for ``MultiExperimentDataModule.experiments_yaml``.
    train_experiments : list of str
        Experiments used for training.
    validation : str
        Experiment for choosing settings (and Lightning's validation loss); never trained on.
    test : str
        Experiment scored once per reported run; never trained on, never used to choose anything.
    annotations : pandas.DataFrame
        Ground truth of every experiment: ``experiment, fov_name, track_id, t, y, x, infection_state, division,
        infection_onset, hours_since_onset`` (``infection_state`` 1 = infected, 0 = uninfected;
        ``infection_onset`` the lineage's first infected frame, -1 if never; ``hours_since_onset`` NaN before
        the onset and for cells never infected).
    experiments : tuple of DemoExperiment
        The acquisitions, in ``experiments.yml`` order.
    """

    experiments_yaml: Path
    train_experiments: list[str]
    validation: str
    test: str
    annotations: pd.DataFrame
    experiments: tuple[DemoExperiment, ...]

    def experiment(self, name: str) -> DemoExperiment:
        """Return the acquisition called ``name``."""
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise KeyError(f"no demo experiment {name!r} (have {[e.name for e in self.experiments]})")


def write_demo_dataset(
    root: str | Path,
    *,
    n_timepoints: int = 12,
    fovs_per_well: int = 1,
    yx_size: tuple[int, int] = (96, 96),
    z_size: int = 3,
    cells_per_fov: int = 8,
    seed: int = 0,
    infection_phenotype: str = "bright_nucleus",
    reporter_brightness_sd: float = 0.0,
    border_margin: float | None = None,
    transient_puncta: float = 0.0,
    puncta_anywhere: bool = False,
    texture_contrast: float = 0.3,
    division_probability: float = 0.08,
    onset_spread_hours: float = 0.0,
    never_infected_fraction: float = 0.0,
    phenotype_hours: float = 0.0,
    experiments: tuple[DemoExperiment, ...] = DEMO_EXPERIMENTS,
    progress: bool = True,
) -> DemoDataset:
    """Write the synthetic plates, their tracks and annotations, and ``experiments.yml`` under ``root``.

    Parameters
    ----------
    root : str or pathlib.Path
        Output folder (created).
    n_timepoints : int, default 12
        Frames per experiment; must exceed every experiment's infection onset.
    fovs_per_well : int, default 1
        FOVs per well (two uninfected and two infected wells per plate).
    yx_size : tuple of int, default (96, 96)
        Image size.
    z_size : int, default 3
        Z slices.
    cells_per_fov : int, default 8
        Cells per FOV at the first frame (divisions add more).
    seed : int, default 0
        Base seed; experiment ``i`` uses ``seed * 100 + i``.
    infection_phenotype : {"bright_nucleus", "relocalisation"}, default "bright_nucleus"
        What infection does to the reporter (:func:`viscy_data.synthetic.write_synthetic_plate`).
    reporter_brightness_sd : float, default 0.0
        Cell-to-cell variation of reporter expression (sd of its log), so that brightness alone does not
        tell infected from uninfected cells.
    border_margin : float, optional
        Keep cell centroids this many pixels inside the image (half the training patch centres every patch on
        its cell); default: cells roam the whole image, some clipped by the border.
    transient_puncta : float, default 0.0
        Mean number of short-lived bright reporter puncta per cell and frame (a nuisance that looks like the
        infected nucleus in a single frame but does not persist).
    puncta_anywhere : bool, default False
        Puncta may appear over the nucleus too (default: cytoplasm only).
    texture_contrast : float, default 0.3
        Contrast of the per-track phase texture, a cue to cell identity that contrastive training latches onto.
    division_probability : float, default 0.08
        Probability per frame that a cell divides.
    onset_spread_hours : float, default 0.0
        Each lineage of the infected wells is infected at its own time, uniformly within this many hours after
        the experiment's ``infection_onset``; 0 infects the whole well at once.
    never_infected_fraction : float, default 0.0
        Fraction of the infected wells' lineages that are never infected.
    phenotype_hours : float, default 0.0
        Hours over which the infection phenotype develops after a cell's onset (0: in full at the onset).
    experiments : tuple of DemoExperiment
        At least three: the training experiments, then the validation experiment, then the test experiment.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    DemoDataset
        Paths, the split and the ground truth.
    """
    from tqdm.auto import tqdm

    from viscy_data.synthetic import write_synthetic_plate

    if len(experiments) < 3:
        raise ValueError(
            f"the demo needs at least one training, one validation and one test experiment, got {len(experiments)}"
        )
    late = [e.name for e in experiments if e.infection_onset >= n_timepoints]
    if late:
        raise ValueError(f"n_timepoints={n_timepoints} ends before the infection onset of {late}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for i, exp in enumerate(tqdm(experiments, desc="Writing synthetic experiments", disable=not progress)):
        plate = write_synthetic_plate(
            root / f"{exp.name}.zarr",
            wells=UNINFECTED_WELLS + INFECTED_WELLS,
            fovs_per_well=fovs_per_well,
            n_timepoints=n_timepoints,
            z_size=z_size,
            yx_size=yx_size,
            cells_per_fov=cells_per_fov,
            channel_names=exp.channel_names,
            infected_wells=INFECTED_WELLS,
            infection_onset=exp.infection_onset,
            infection_phenotype=infection_phenotype,
            reporter_brightness_sd=reporter_brightness_sd,
            border_margin=border_margin,
            noise_sd=exp.noise_sd,
            transient_puncta=transient_puncta,
            puncta_anywhere=puncta_anywhere,
            texture_contrast=texture_contrast,
            division_probability=division_probability,
            onset_spread=exp.frames(onset_spread_hours),
            never_infected_fraction=never_infected_fraction,
            phenotype_frames=max(1, exp.frames(phenotype_hours)),
            reporter_gain=exp.reporter_gain,
            background=exp.background,
            blur_sigma=exp.blur_sigma,
            seed=seed * 100 + i,
            tracks_path=root / f"{exp.name}_tracks",
        )
        plate.write_annotation_csv(root / f"{exp.name}_annotations.csv")
        truth = plate.annotations
        since = truth["t"] - truth["infection_onset"]
        hours = np.where(truth["infection_state"] == 1, since * exp.interval_minutes / 60, np.nan)
        annotations.append(truth.assign(experiment=exp.name, hours_since_onset=hours))
        entries.append(
            {
                "name": exp.name,
                "data_path": str(plate.store_path),
                "tracks_path": str(plate.tracks_path),
                "channel_names": list(exp.channel_names),
                "source_channel": list(exp.channel_names[:2]),
                "condition_wells": {"uninfected": list(UNINFECTED_WELLS), "infected": list(INFECTED_WELLS)},
                "interval_minutes": exp.interval_minutes,
                "start_hpi": exp.start_hpi,
                "organelle": exp.organelle,
                "date": exp.date,
                "moi": 1.0,
            }
        )
    experiments_yaml = root / "experiments.yml"
    header = (
        "# Synthetic experiments written by `dynaclr demo`; the last two (validation, test) are never trained on.\n"
    )
    experiments_yaml.write_text(header + yaml.safe_dump({"experiments": entries}, sort_keys=False))
    columns = [
        "experiment",
        "fov_name",
        "track_id",
        "t",
        "y",
        "x",
        "infection_state",
        "division",
        "infection_onset",
        "hours_since_onset",
    ]
    return DemoDataset(
        experiments_yaml=experiments_yaml,
        train_experiments=[e.name for e in experiments[:-2]],
        validation=experiments[-2].name,
        test=experiments[-1].name,
        annotations=pd.concat(annotations, ignore_index=True)[columns],
        experiments=tuple(experiments),
    )


#: what the synthetic cells look like (both presets), chosen for realism before any model was scored. Cells stay
#: half a patch from the border so every patch is centred on its cell. In the infected wells each lineage is
#: infected at its own time within 3 h of the experiment's first onset, a quarter of them never (bystanders), and
#: infection moves the reporter into the nucleus over 3 h at constant total intensity; expression varies from
#: cell to cell; short-lived bright reporter puncta (one per cell every other frame on average) appear anywhere,
#: the nucleus included, so a single frame is ambiguous; no per-track phase texture gives away cell identity.
SYNTHETIC_CELLS = {
    "yx_size": (128, 128),
    "border_margin": 17,
    "infection_phenotype": "relocalisation",
    "reporter_brightness_sd": 0.5,
    "transient_puncta": 0.5,
    "puncta_anywhere": True,
    "texture_contrast": 0.0,
    "division_probability": 0.04,
    "onset_spread_hours": 3.0,
    "never_infected_fraction": 0.25,
    "phenotype_hours": 3.0,
}
#: (dataset size, training length) of the full and the --fast demo
PRESETS = {
    False: {"data": {**SYNTHETIC_CELLS, "n_timepoints": 16, "fovs_per_well": 2, "cells_per_fov": 10}, "max_epochs": 4},
    True: {
        "data": {**SYNTHETIC_CELLS, "yx_size": (96, 96), "n_timepoints": 10, "fovs_per_well": 1, "cells_per_fov": 4},
        "max_epochs": 1,
    },
}
