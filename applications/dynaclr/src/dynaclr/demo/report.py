"""The demo's read-outs, their summary over training seeds, the printed table and the figures.

Every representation (a learned encoder's embeddings or a baseline's features) is scored the same way:

- **infection**: balanced accuracy of a logistic regression trained on the training experiments' cells and
  applied to the scored experiment;
- **time since onset**: Spearman correlation between the true and the predicted hours since infection onset
  of the scored experiment's infected cells, from a ridge regression trained on the training experiments'
  infected cells (both read-outs: :func:`dynaclr.evaluation.baselines.fit_linear_probe` and
  :func:`~dynaclr.evaluation.baselines.fit_linear_readout`, standardised features, regularisation chosen by
  cross-validation on the training cells grouped by track);
- **temporal order**: within-track rank correlation of feature distance with time lag
  (:func:`viscy_utils.evaluation.smoothness.compute_temporal_order`) over the tracks of the scored experiment
  in which the cell gets infected; frames of one cell only, so per-cell constants (brightness, shape) score 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "METHODS",
    "READOUTS",
    "Readouts",
    "format_table",
    "plot_embeddings",
    "plot_readouts",
    "score_representation",
    "split_by_experiment",
    "summarise",
    "track_groups",
    "transition_tracks",
]

#: ground-truth columns joined onto the features, and the keys they are joined on
_KEYS = ["fov_name", "track_id", "t"]
_TRUTH = ["infection_state", "infection_onset", "hours_since_onset"]

#: read-out key -> (table header, description)
READOUTS = {
    "infection_balanced_accuracy": ("infection bal. acc.", "infected vs uninfected, logistic regression"),
    "time_since_onset_spearman": ("time since onset rho", "hours since onset of infected cells, ridge regression"),
    "temporal_order": ("temporal order rho", "within-track rank corr. of distance with time lag"),
}

#: method key -> label, in table order
METHODS = {
    "dynaclr": "DynaCLR",
    "same_frame_ablation": "tau = 0 ablation (same frame)",
    "untrained_encoder": "untrained encoder",
    "raw_pixels": "raw pixels",
    "disc_features": "disc intensity features",
}


@dataclass(frozen=True)
class Readouts:
    """What one representation captures of infection and its dynamics (see the module docstring).

    Attributes
    ----------
    infection_balanced_accuracy : float
        Infected vs uninfected, trained on the training experiments, scored on the scored experiment.
    time_since_onset_spearman : float
        Spearman rho of predicted vs true hours since onset of the scored experiment's infected cells.
    temporal_order : float
        Mean within-track rank correlation of distance with time lag (tracks that get infected).
    """

    infection_balanced_accuracy: float
    time_since_onset_spearman: float
    temporal_order: float


def split_by_experiment(
    features: np.ndarray, index: pd.DataFrame, truth: pd.DataFrame, experiments: list[str], source: str = "features"
):
    """Cut features of several experiments, stacked in ``experiments`` order, into one labelled AnnData each.

    ``dynaclr predict`` (and the demo's patch reader) embed every observation of the predicted experiments in
    index order: experiment after experiment. Each block's cells (keys and centroids) are checked against that
    experiment's ground truth, so a change of order fails loudly instead of mislabelling cells.

    Parameters
    ----------
    features : numpy.ndarray
        ``(n_cells, n_features)``.
    index : pandas.DataFrame
        ``fov_name, track_id, t, y, x`` of every row of ``features``.
    truth : pandas.DataFrame
        Annotations of the experiments (``experiment, fov_name, track_id, t, y, x`` and :data:`_TRUTH`).
    experiments : list of str
        Experiments in the order they were embedded.
    source : str, default "features"
        Named in errors (e.g. the embedding store).

    Returns
    -------
    dict of str to anndata.AnnData
        Experiment -> features with ``obs`` = experiment, keys and ground truth.

    Raises
    ------
    ValueError
        If the number of rows or the cells of a block do not match the experiments' annotations.
    """
    import anndata

    index = index[[*_KEYS, "y", "x"]].reset_index(drop=True)
    index = index.assign(fov_name=index["fov_name"].astype(str).str.strip("/")).astype({"track_id": np.int64})
    counts = [int((truth["experiment"] == name).sum()) for name in experiments]
    if sum(counts) != len(features) or len(index) != len(features):
        raise ValueError(f"{source}: {len(features)} rows, but the annotations of {experiments} have {counts} cells")
    out, start = {}, 0
    for name, count in zip(experiments, counts):
        block = index.iloc[start : start + count].reset_index(drop=True)
        labels = truth.loc[truth["experiment"] == name, [*_KEYS, "y", "x", *_TRUTH]].astype({"track_id": np.int64})
        merged = block.merge(labels, on=_KEYS, how="left", validate="one_to_one", suffixes=("", "_truth"))
        # the same track and frame but elsewhere in the image: another experiment's cell
        moved = np.hypot(merged["y"] - merged["y_truth"], merged["x"] - merged["x_truth"]) > 0.01
        missing = merged["infection_state"].isna() | moved
        if missing.any():
            example = block[missing].iloc[0].to_dict()
            raise ValueError(
                f"{source}: {int(missing.sum())} cells of the {name} block have no annotation, e.g. {example}"
            )
        obs = merged.drop(columns=["y_truth", "x_truth"]).astype({"infection_state": int, "infection_onset": int})
        obs.insert(0, "experiment", name)
        obs.index = obs.index.astype(str)
        out[name] = anndata.AnnData(X=np.asarray(features[start : start + count], dtype=np.float32), obs=obs)
        start += count
    return out


def track_groups(obs: pd.DataFrame) -> np.ndarray:
    """One integer per track (experiment, FOV and track id): the groups of the read-outs' cross-validation."""
    keys = obs["experiment"].astype(str) + "/" + obs["fov_name"].astype(str) + "/" + obs["track_id"].astype(str)
    return pd.factorize(keys)[0]


def transition_tracks(obs: pd.DataFrame) -> np.ndarray:
    """Boolean per cell: its track gets infected after its first frame (the tracks with a state change)."""
    span = obs.groupby(["fov_name", "track_id"])["t"].agg(["min", "max"])
    first = obs.set_index(["fov_name", "track_id"]).index.map(span["min"]).to_numpy()
    last = obs.set_index(["fov_name", "track_id"]).index.map(span["max"]).to_numpy()
    onset = obs["infection_onset"].to_numpy()
    return (onset > first) & (onset <= last)


def score_representation(train, scored, seed: int = 42) -> Readouts:
    """Score one representation: train the read-outs on ``train``, evaluate them on ``scored``.

    Parameters
    ----------
    train : anndata.AnnData
        Labelled features of the training experiments (``obs``: :data:`_TRUTH` columns).
        The linear read-outs are fitted on it, preprocessing included.
    scored : anndata.AnnData
        Labelled features of the scored (validation or test) experiment.
    seed : int, default 42
        Seed of the logistic regression's solver.

    Returns
    -------
    Readouts
        The three read-outs.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import balanced_accuracy_score

    from dynaclr.evaluation.baselines import fit_linear_probe, fit_linear_readout
    from viscy_utils.evaluation.smoothness import compute_temporal_order

    train_x, scored_x = np.asarray(train.X), np.asarray(scored.X)
    groups = track_groups(train.obs)
    infection = train.obs["infection_state"].to_numpy()
    probe = fit_linear_probe(train_x, infection, groups, seed=seed)
    accuracy = balanced_accuracy_score(scored.obs["infection_state"].to_numpy(), probe.predict(scored_x))

    infected_train = infection == 1
    infected_scored = scored.obs["infection_state"].to_numpy() == 1
    hours_train = train.obs["hours_since_onset"].to_numpy()[infected_train]
    readout = fit_linear_readout(train_x[infected_train], hours_train, groups[infected_train])
    hours = readout.predict(scored_x[infected_scored])
    rho = spearmanr(scored.obs["hours_since_onset"].to_numpy()[infected_scored], hours).statistic

    order = compute_temporal_order(scored, track_mask=transition_tracks(scored.obs))
    return Readouts(
        infection_balanced_accuracy=float(accuracy), time_since_onset_spearman=float(rho), temporal_order=order.score
    )


def summarise(per_seed: dict[str, Readouts]) -> dict:
    """Per-seed values, mean and sample standard deviation (None for a single value) of every read-out.

    Parameters
    ----------
    per_seed : dict of str to Readouts
        Seed (as a string; ``"-"`` for a deterministic method) -> read-outs.

    Returns
    -------
    dict
        ``{"per_seed": {seed: {readout: value}}, "n": n, "mean": {readout: value}, "sd": {readout: value}}``.
    """
    values = {seed: asdict(scores) for seed, scores in per_seed.items()}
    mean, sd = {}, {}
    for key in READOUTS:
        column = np.array([v[key] for v in values.values()], dtype=np.float64)
        mean[key] = float(column.mean())
        sd[key] = float(column.std(ddof=1)) if column.size > 1 else None
    return {"per_seed": values, "n": len(values), "mean": mean, "sd": sd}


def _cell(summary: dict, key: str) -> str:
    mean, sd = summary["mean"][key], summary["sd"][key]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} +- {sd:.3f}"


def format_table(metrics: dict, markdown: bool = False) -> str:
    """Format the read-outs of a ``metrics.json`` as a table (mean +- sd over seeds; one value if deterministic).

    Parameters
    ----------
    metrics : dict
        As written by :func:`dynaclr.demo.run.run_demo`.
    markdown : bool, default False
        A Markdown table (``±``) instead of the fixed-width text the demo prints: what the README shows.

    Returns
    -------
    str
        One row per method and one column per read-out.
    """
    rows = []
    for key, label in METHODS.items():
        summary = metrics["methods"].get(key)
        if summary is None:
            continue
        name = (
            f"{label} (n={summary['n']})" if key in ("dynaclr", "same_frame_ablation", "untrained_encoder") else label
        )
        rows.append([name, *(_cell(summary, k) for k in READOUTS)])
    if markdown:
        lines = ["| method | " + " | ".join(READOUTS[k][0] for k in READOUTS) + " |"]
        lines.append("|---|" + "---:|" * len(READOUTS))
        lines += ["| " + " | ".join(cell.replace("+-", "±") for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    width = 32
    lines = [f"  {'method':{width}s}" + "".join(f"{READOUTS[k][0]:>24s}" for k in READOUTS)]
    lines += [f"  {row[0]:{width}s}" + "".join(f"{cell:>24s}" for cell in row[1:]) for row in rows]
    return "\n".join(lines)


def plot_readouts(metrics: dict, path: str | Path) -> Path:
    """Save a PNG of a ``metrics.json``: one panel per read-out, a bar per method (mean), a dot per seed.

    Parameters
    ----------
    metrics : dict
        As written by :func:`dynaclr.demo.run.run_demo` (or read back from ``metrics.json``).
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [k for k in METHODS if k in metrics["methods"]]
    colours = ["tab:red", "tab:orange", "tab:gray", "tab:blue", "tab:green"]
    fig, axes = plt.subplots(1, len(READOUTS), figsize=(4.2 * len(READOUTS), 3.8))
    for ax, (key, (title, what)) in zip(axes, READOUTS.items()):
        for x, method in enumerate(methods):
            summary = metrics["methods"][method]
            ax.bar(x, summary["mean"][key], color=colours[x % len(colours)], alpha=0.45, width=0.7)
            seeds = [v[key] for v in summary["per_seed"].values()]
            ax.scatter(np.full(len(seeds), x) + np.linspace(-0.15, 0.15, len(seeds)), seeds, s=12, color="k", zorder=3)
            if summary["sd"][key] is not None:
                ax.errorbar(x, summary["mean"][key], yerr=summary["sd"][key], color="k", capsize=3, lw=1)
        ax.set_xticks(range(len(methods)), [METHODS[m] for m in methods], rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{title}\n({what})", fontsize=9)
        ax.axhline(0.0, color="k", lw=0.5)
    seeds = ", ".join(str(s) for s in metrics["seeds"])
    fig.suptitle(
        f"dynaclr demo, {metrics['split']} experiment {metrics['scored_experiment']} (training seeds {seeds})",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_embeddings(embeddings: dict, path: str | Path) -> Path:
    """Save a PNG: PCA of each representation of the scored experiment, coloured by infection and its age.

    Parameters
    ----------
    embeddings : dict
        Title (e.g. ``"DynaCLR"``) -> labelled AnnData of the scored experiment; one row of panels each.
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    fig, axes = plt.subplots(len(embeddings), 2, figsize=(9, 4 * len(embeddings)), squeeze=False)
    for row, (title, adata) in zip(axes, embeddings.items()):
        pcs = PCA(n_components=2, random_state=0).fit_transform(StandardScaler().fit_transform(np.asarray(adata.X)))
        infected = adata.obs["infection_state"].to_numpy() == 1
        for mask, colour, label in ((~infected, "tab:blue", "uninfected"), (infected, "tab:red", "infected")):
            row[0].scatter(pcs[mask, 0], pcs[mask, 1], s=4, c=colour, label=label, alpha=0.6, linewidths=0)
        row[0].legend(markerscale=3, loc="best")
        row[0].set_title(f"{title}: infection state")
        row[1].scatter(pcs[~infected, 0], pcs[~infected, 1], s=3, c="lightgray", linewidths=0)
        hours = adata.obs["hours_since_onset"].to_numpy()[infected]
        points = row[1].scatter(pcs[infected, 0], pcs[infected, 1], s=4, c=hours, cmap="viridis", linewidths=0)
        fig.colorbar(points, ax=row[1], label="hours since infection onset")
        row[1].set_title(f"{title}: time since onset (infected cells)")
        for ax in row:
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
    fig.suptitle("DynaCLR demo: scored experiment (PCA)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
