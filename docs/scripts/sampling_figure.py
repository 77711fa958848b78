"""Draw what each sampling axis of FlexibleBatchSampler does to the batches (docs/images/sampling_axes.png).

    uv run python docs/scripts/sampling_figure.py [--out docs/images/sampling_axes.png]

The anchors are a made-up table like the one MultiExperimentDataModule builds: three experiments of
unequal size (6000, 3000 and 1000 cells), each with more uninfected than infected cells, observed from
0 to 24 hours post infection. Each row of the figure draws 12 batches of 64 with one setting and shows,
per batch, the experiments it mixes, its conditions and the times of its cells. The batches come from
the real sampler; nothing is drawn by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from viscy_data import FlexibleBatchSampler

EXPERIMENTS = {"exp A": 6000, "exp B": 3000, "exp C": 1000}
INFECTED_FRACTION = 0.25
BATCH_SIZE = 64
N_BATCHES = 12

#: (row title, sampler arguments); every axis off first, then one axis at a time, then all together
SETTINGS = [
    ("every axis off\n(uniform over all cells)", dict(experiment_aware=False, condition_balanced=False)),
    ("experiment_aware", dict(experiment_aware=True, condition_balanced=False)),
    ("experiment_aware\n+ leaky=0.25", dict(experiment_aware=True, leaky=0.25, condition_balanced=False)),
    ("condition_balanced", dict(experiment_aware=False, condition_balanced=True)),
    (
        "temporal_enrichment\n(window 2 h, global 0.3)",
        dict(experiment_aware=False, condition_balanced=False, temporal_enrichment=True),
    ),
    (
        "all three",
        dict(experiment_aware=True, condition_balanced=True, temporal_enrichment=True),
    ),
]


def anchors(seed: int = 0) -> pd.DataFrame:
    """Return a valid-anchors table: experiment, condition and hours post infection per cell."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, n in EXPERIMENTS.items():
        infected = rng.random(n) < INFECTED_FRACTION
        parts.append(
            pd.DataFrame(
                {
                    "experiment": name,
                    "condition": np.where(infected, "infected", "uninfected"),
                    "hours_post_infection": rng.integers(0, 49, n) / 2.0,  # every 30 min
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def draw(table: pd.DataFrame, **kwargs) -> list[np.ndarray]:
    """Return the first ``N_BATCHES`` batches of row indices with these sampler arguments."""
    sampler = FlexibleBatchSampler(table, batch_size=BATCH_SIZE, seed=1, **kwargs)
    batches = []
    for batch in sampler:
        batches.append(np.asarray(batch))
        if len(batches) == N_BATCHES:
            break
    return batches


def stacked(ax, fractions: np.ndarray, labels: list[str], colours: list[str]) -> None:
    """Stacked bars: one bar per batch, one segment per category."""
    bottom = np.zeros(fractions.shape[0])
    x = np.arange(fractions.shape[0])
    for k, (label, colour) in enumerate(zip(labels, colours, strict=True)):
        ax.bar(x, fractions[:, k], bottom=bottom, color=colour, width=0.85, label=label)
        bottom += fractions[:, k]
    ax.set_ylim(0, 1)
    ax.set_xticks([])
    ax.set_yticks([0, 0.5, 1])


def figure(out: Path) -> None:
    """Draw the figure and save it as a PNG."""
    table = anchors()
    experiments = list(EXPERIMENTS)
    conditions = ["uninfected", "infected"]
    fig, axes = plt.subplots(len(SETTINGS), 3, figsize=(11, 2.0 * len(SETTINGS)), constrained_layout=True)
    for row, (title, kwargs) in enumerate(SETTINGS):
        batches = draw(table, **kwargs)
        exp = np.array([[np.mean(table["experiment"].to_numpy()[b] == e) for e in experiments] for b in batches])
        cond = np.array([[np.mean(table["condition"].to_numpy()[b] == c) for c in conditions] for b in batches])
        ax_exp, ax_cond, ax_time = axes[row]
        stacked(ax_exp, exp, experiments, ["#1b9e77", "#d95f02", "#7570b3"])
        stacked(ax_cond, cond, conditions, ["#9ecae1", "#de2d26"])
        hpi = table["hours_post_infection"].to_numpy()
        for i, b in enumerate(batches):
            jitter = np.random.default_rng(i).uniform(-0.3, 0.3, len(b))
            ax_time.scatter(i + jitter, hpi[b], s=3, color="#444444", alpha=0.6, linewidths=0)
        ax_time.set_ylim(-1, 25)
        ax_time.set_xticks([])
        ax_exp.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
        if row == 0:
            ax_exp.set_title("experiments in each batch")
            ax_cond.set_title("conditions in each batch")
            ax_time.set_title("hours post infection of each cell")
            ax_exp.legend(loc="upper left", bbox_to_anchor=(0, -0.02), ncol=3, fontsize=7, frameon=False)
            ax_cond.legend(loc="upper left", bbox_to_anchor=(0, -0.02), ncol=2, fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel(f"{N_BATCHES} consecutive batches of {BATCH_SIZE}")
    fig.suptitle(
        "FlexibleBatchSampler: 3 experiments of 6000 / 3000 / 1000 cells, 25% infected, 0-24 h post infection",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[1] / "images" / "sampling_axes.png"
    parser.add_argument("--out", type=Path, default=default)
    figure(parser.parse_args().out)


if __name__ == "__main__":
    main()
