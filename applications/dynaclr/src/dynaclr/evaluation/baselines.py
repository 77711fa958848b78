"""Baselines an embedding must beat, computed on the same patches the encoder sees.

- :func:`cell_patches`: every predicted cell's normalised, centre-cropped patch, read through a
  :class:`~dynaclr.datamodule.MultiExperimentDataModule` (the reader and transforms of ``dynaclr predict``);
- :func:`disc_intensity_features`: hand-made per-channel intensity statistics in discs around the cell
  centre (e.g. nucleus-sized and cell-sized); the raw-pixel baseline is the patches themselves, flattened;
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


def disc_intensity_features(images: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Per-channel intensity statistics in discs centred on the patch centre.

    For each disc radius (e.g. a nucleus and a cell radius, in pixels) and channel: mean, standard
    deviation, minimum, maximum and median over the disc (all Z planes); the statistics of the
    ``dynaclr demo`` baseline.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, Z, Y, X)`` patches centred on the cells.
    radii : sequence of float
        Disc radii in pixels; a pixel belongs to a disc when its distance to the patch centre is at most
        the radius.

    Returns
    -------
    numpy.ndarray
        ``(N, len(radii) * 5 * C)`` float32: per disc, the five statistics, each for every channel.

    Raises
    ------
    ValueError
        If a radius is not positive or a disc holds no pixel.
    """
    n, c, _, y, x = images.shape
    yy, xx = np.mgrid[:y, :x]
    r2 = (yy - (y - 1) / 2) ** 2 + (xx - (x - 1) / 2) ** 2
    features = []
    for radius in radii:
        inside = r2 <= float(radius) ** 2
        if radius <= 0 or not inside.any():
            raise ValueError(f"a disc of radius {radius} holds no pixel of a {y}x{x} patch")
        values = images[..., inside].reshape(n, c, -1).astype(np.float64)
        features += [values.mean(-1), values.std(-1), values.min(-1), values.max(-1), np.median(values, axis=-1)]
    return np.concatenate(features, axis=1).astype(np.float32)


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
