"""Baselines an embedding must beat, computed on the same patches the encoder sees.

- :func:`cell_patches`: every predicted cell's normalised, centre-cropped patch, read through a
  :class:`~dynaclr.datamodule.MultiExperimentDataModule` (the reader and transforms of ``dynaclr predict``);
- :func:`baseline_features`: the patches themselves, flattened (raw pixels), and hand-made per-channel
  intensity statistics in discs around the cell centre (nucleus-sized and cell-sized,
  :func:`viscy_utils.evaluation.feature.disc_intensity_features`);
- :func:`fit_linear_probe` and :func:`fit_linear_readout`: the linear read-outs fitted identically on
  every feature set (regularisation chosen by cross-validation on the training cells only, grouped by track).

Needs scikit-learn and scipy (``pip install "dynaclr[eval]"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "NEWTON_MAX_FEATURES",
    "CellPatches",
    "baseline_features",
    "cell_patches",
    "fit_linear_probe",
    "fit_linear_readout",
]

#: regularisation grids searched by cross-validation on the training cells
_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
_ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
#: up to this many features the probe solves by Newton steps on the exact Hessian (``newton-cholesky``): on the
#: demo's 320-d embeddings 40x faster than L-BFGS (1.4 s instead of 54 s for the whole grid search, same C, and
#: L-BFGS stopped at ``max_iter`` short of the optimum). Above it, e.g. raw pixels, each Hessian costs
#: n_samples x n_features^2 and L-BFGS is the faster solver.
NEWTON_MAX_FEATURES = 1024


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


def baseline_features(
    images: np.ndarray, disc_radii: dict[str, float], channel_names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Compute the non-learned representations of cell-centred patches: the baselines of every DynaCLR report.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, Z, Y, X)`` patches as the encoder receives them (e.g. :attr:`CellPatches.images`).
    disc_radii : dict of str to float
        Disc name -> radius in pixels, e.g. ``{"nucleus": 3.0, "cell": 7.0}``: about a nucleus and a whole cell.
    channel_names : list of str, optional
        Channel names (feature names only).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"raw_pixels"``: every voxel of the patch, flattened (``(N, C * Z * Y * X)``); ``"disc_features"``:
        mean, sd, min, max and median of every channel in each disc
        (:func:`viscy_utils.evaluation.feature.disc_intensity_features`), float32.
    """
    from viscy_utils.evaluation.feature import disc_intensity_features

    images = np.asarray(images)
    discs = disc_intensity_features(images, disc_radii, channel_names)
    return {
        "raw_pixels": images.reshape(len(images), -1),
        "disc_features": discs.to_numpy(dtype=np.float32),
    }


def _groups_cv(groups: np.ndarray, n_splits: int = 5):
    from sklearn.model_selection import GroupKFold

    return GroupKFold(n_splits=min(n_splits, len(np.unique(groups))))


def fit_linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, groups: np.ndarray, seed: int = 0, n_jobs: int | None = -1
):
    """Fit a logistic-regression probe on one set of cells (score it on others with ``.predict``).

    Features are standardised on the training cells; the inverse regularisation ``C`` is chosen from
    a fixed grid by grouped cross-validation on the training cells (``groups``: e.g. track ids, so
    frames of one cell never sit on both sides of a split), for balanced accuracy. Classes are
    weighted to balance them. Up to :data:`NEWTON_MAX_FEATURES` features the solver is
    ``newton-cholesky`` (exact Hessian, converges in a few steps), above it ``lbfgs``.

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
    n_jobs : int or None, default -1
        Processes fitting the folds and ``C`` values in parallel (scikit-learn's convention: -1 all cores,
        None one). The fits are independent, so the result is the same for any value; on high-dimensional
        features (raw pixels) L-BFGS in one process with threaded BLAS uses 2 cores poorly, and separate
        processes fit the demo's raw-pixel probe 2.5x faster on 2 cores.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Refitted on all training cells with the chosen ``C``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    solver = "newton-cholesky" if train_x.shape[1] <= NEWTON_MAX_FEATURES else "lbfgs"
    pipeline = make_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed, solver=solver),
    )
    search = GridSearchCV(
        pipeline,
        {"logisticregression__C": list(_C_GRID)},
        cv=_groups_cv(groups),
        scoring="balanced_accuracy",
        n_jobs=n_jobs,
    )
    return search.fit(train_x, train_y, groups=groups)


def fit_linear_readout(train_x: np.ndarray, train_y: np.ndarray, groups: np.ndarray, n_jobs: int | None = -1):
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
    n_jobs : int or None, default -1
        Processes fitting the folds and penalties in parallel (-1 all cores, None one); the result does not
        depend on it.

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
        n_jobs=n_jobs,
    )
    return search.fit(train_x, train_y, groups=groups)
