"""Baselines an embedding must beat, computed on the same patches the encoder sees.

- :func:`cell_patches`: every predicted cell's normalised, centre-cropped patch, read through a
  :class:`~dynaclr.datamodule.MultiExperimentDataModule` (the reader and transforms of ``dynaclr predict``);
- :func:`raw_pixel_features`: the patch pixels themselves (block-averaged), for a linear probe on raw pixels;
- :func:`disc_intensity_features`: hand-made per-channel intensity statistics in discs around the cell
  centre (e.g. nucleus-sized and cell-sized);
- :func:`fit_linear_probe` and :func:`fit_linear_readout`: the linear read-outs fitted identically on
  every feature set (regularisation chosen by cross-validation on the training cells only, grouped by track).

Needs scikit-learn and scipy (``pip install "dynaclr[eval]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CellPatches",
    "cell_patches",
    "disc_intensity_features",
    "fit_linear_probe",
    "fit_linear_readout",
    "raw_pixel_features",
]

#: regularisation grids searched by cross-validation on the training cells
_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
_ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class CellPatches:
    """Patches of predicted cells and their tracking index.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, C, Z, Y, X)`` float32, normalised and centre-cropped as the encoder receives them.
    index : pandas.DataFrame
        One row per patch: ``fov_name, track_id, t, id, parent_track_id, parent_id, y, x`` (and ``z``).
    """

    images: np.ndarray
    index: pd.DataFrame


def cell_patches(datamodule) -> CellPatches:
    """Read every cell the data module predicts, through its own reader and normalisation.

    Parameters
    ----------
    datamodule : dynaclr.datamodule.MultiExperimentDataModule
        Configured for prediction (``predict_experiments``); ``setup("predict")`` is called here.

    Returns
    -------
    CellPatches
        Patches in prediction order with their index.
    """
    datamodule.setup("predict")
    images, records = [], []
    for batch in datamodule.predict_dataloader():
        records.extend(batch["index"])
        batch = datamodule.on_after_batch_transfer(batch, 0)
        images.append(batch["anchor"].numpy())
    index = pd.DataFrame(records)
    if "fov_name" in index.columns:
        index["fov_name"] = index["fov_name"].astype(str).str.strip("/")
    return CellPatches(images=np.concatenate(images).astype(np.float32, copy=False), index=index)


def raw_pixel_features(images: np.ndarray, bin_size: int = 1) -> np.ndarray:
    """Flattened patch pixels, optionally averaged over ``bin_size`` x ``bin_size`` blocks.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, Z, Y, X)`` patches (Y and X divisible by ``bin_size``).
    bin_size : int, default 1
        Block size of the YX average (2 quarters the feature count).

    Returns
    -------
    numpy.ndarray
        ``(N, C * Z * Y/bin * X/bin)`` float32.
    """
    n, c, z, y, x = images.shape
    if y % bin_size or x % bin_size:
        raise ValueError(f"patch size {(y, x)} is not divisible by bin_size={bin_size}")
    binned = images.reshape(n, c, z, y // bin_size, bin_size, x // bin_size, bin_size).mean(axis=(4, 6))
    return binned.reshape(n, -1).astype(np.float32, copy=False)


def disc_intensity_features(images: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Per-channel intensity statistics in discs centred on the patch centre.

    For each disc radius (e.g. a nucleus and a cell radius, in pixels) and channel: mean, standard
    deviation, median and 90th percentile over the disc (all Z planes), plus the mean of the ring
    between consecutive radii minus the inner disc mean (contrast of a nucleus against its cytoplasm).

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, Z, Y, X)`` patches centred on the cells.
    radii : sequence of float
        Disc radii in pixels, increasing.

    Returns
    -------
    numpy.ndarray
        ``(N, C * (4 * len(radii) + len(radii) - 1))`` float32.
    """
    radii = [float(r) for r in radii]
    if not radii or any(b <= a for a, b in zip(radii, radii[1:])) or radii[0] <= 0:
        raise ValueError(f"radii must be positive and increasing, got {radii}")
    n, c, z, y, x = images.shape
    yy, xx = np.mgrid[:y, :x]
    distance = np.hypot(yy - (y - 1) / 2, xx - (x - 1) / 2)
    flat = images.reshape(n, c, z, y * x)
    features, means = [], []
    for radius in radii:
        inside = (distance <= radius).reshape(-1)
        values = flat[..., inside].reshape(n, c, -1)
        mean = values.mean(axis=-1)
        means.append(mean)
        q50, q90 = np.percentile(values, [50, 90], axis=-1)
        features += [mean, values.std(axis=-1), q50, q90]
    for inner, outer in zip(radii, radii[1:]):
        ring = ((distance > inner) & (distance <= outer)).reshape(-1)
        features.append(flat[..., ring].reshape(n, c, -1).mean(axis=-1) - means[radii.index(inner)])
    return np.concatenate(features, axis=1).astype(np.float32, copy=False)


def _groups_cv(groups: np.ndarray, n_splits: int = 5):
    from sklearn.model_selection import GroupKFold

    return GroupKFold(n_splits=min(n_splits, len(np.unique(groups))))


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, groups: np.ndarray, seed: int = 0):
    """Fit a logistic-regression probe on one set of cells (score it on others with ``.predict``).

    Features are standardised on the training cells; the inverse regularisation ``C`` is chosen from
    a fixed grid by grouped cross-validation on the training cells (``groups``: e.g. track ids, so
    frames of one cell never sit on both sides of a split), for balanced accuracy. Classes are
    weighted to balance them.

    Parameters
    ----------
    train_x : numpy.ndarray
        ``(N, F)`` features.
    train_y : numpy.ndarray
        Class labels.
    groups : numpy.ndarray
        Group of each training cell for the cross-validation.
    seed : int, default 0
        Seed of the solver.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Refitted on all training cells with the chosen ``C``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    )
    search = GridSearchCV(
        pipeline, {"logisticregression__C": list(_C_GRID)}, cv=_groups_cv(groups), scoring="balanced_accuracy"
    )
    return search.fit(train_x, train_y, groups=groups)


def fit_linear_readout(train_x: np.ndarray, train_y: np.ndarray, groups: np.ndarray):
    """Fit a ridge read-out of a continuous target (e.g. hours since the cell's birth).

    Features are standardised on the training cells; the penalty is chosen from a fixed grid by
    grouped cross-validation on the training cells.

    Parameters
    ----------
    train_x : numpy.ndarray
        ``(N, F)`` features.
    train_y : numpy.ndarray
        Targets.
    groups : numpy.ndarray
        Group of each training cell for the cross-validation.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Refitted on all training cells with the chosen penalty.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    search = GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": list(_ALPHA_GRID)},
        cv=_groups_cv(groups),
        scoring="neg_mean_squared_error",
    )
    return search.fit(train_x, train_y, groups=groups)
