"""Linear probing of encoder features and attribution of linear read-outs (captum).

``fit_logistic_regression`` and ``linear_from_binary_logistic_regression`` need scikit-learn
(``[eval]``); the attribution methods of :class:`AssembledClassifier` need captum (``[lca]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from viscy_utils.evaluation._optional import require

__all__ = ["AssembledClassifier", "fit_logistic_regression", "linear_from_binary_logistic_regression"]


def _split_fovs(fov_names: np.ndarray, codes: np.ndarray, train_ratio: float, random_state: Any) -> np.ndarray:
    """Choose training FOVs, stratified by each FOV's majority class."""
    model_selection = require("sklearn.model_selection", "eval", "fit_logistic_regression")
    frame = pd.DataFrame({"fov": fov_names, "code": codes})
    majority = frame.groupby("fov")["code"].agg(lambda c: c.value_counts().idxmax())
    counts = majority.value_counts()
    stratify = majority.to_numpy() if len(counts) > 1 and counts.min() >= 2 else None
    train, _ = model_selection.train_test_split(
        majority.index.to_numpy(), test_size=1 - train_ratio, stratify=stratify, random_state=random_state
    )
    return np.asarray(train)


def fit_logistic_regression(
    features: Any,
    annotations: pd.Series,
    train_fovs: list[str] | None = None,
    train_ratio: float = 0.8,
    remove_background_class: bool = True,
    scale_features: bool = False,
    class_weight: str | dict | None = "balanced",
    random_state: int | None = None,
    solver: str = "liblinear",
) -> tuple[Any, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Fit a logistic regression on features, splitting train/test by field of view.

    Parameters
    ----------
    features : xarray.DataArray
        ``(sample, features)`` with a per-sample ``fov_name`` coordinate.
    annotations : pandas.Series
        Categorical labels aligned with the samples; their category codes are the classes.
    train_fovs : list of str, optional
        FOVs used for training; default: a random ``train_ratio`` of the FOVs stratified by each
        FOV's majority class.
    train_ratio : float
        Fraction of FOVs for training when ``train_fovs`` is None.
    remove_background_class : bool
        Drop code 0 (background) and shift the remaining codes down by one.
    scale_features : bool
        Standardise with a scaler fitted on the training samples (applied to both splits).
    class_weight, random_state, solver
        ``LogisticRegression`` arguments.

    Returns
    -------
    tuple
        The classifier and ``((X_train, y_train), (X_test, y_test))``.
    """
    linear_model = require("sklearn.linear_model", "eval", "fit_logistic_regression")
    metrics = require("sklearn.metrics", "eval", "fit_logistic_regression")
    if "fov_name" not in features.coords:
        raise KeyError("features needs a per-sample 'fov_name' coordinate")
    codes = np.asarray(pd.Series(annotations).astype("category").cat.codes)
    x = np.asarray(features.values, dtype=np.float64)
    fovs = np.asarray(features["fov_name"].values).astype(str)
    if len(codes) != len(x):
        raise ValueError(f"annotations has {len(codes)} entries but features has {len(x)} samples")
    if remove_background_class:
        keep = codes != 0
        x, codes, fovs = x[keep], codes[keep] - 1, fovs[keep]
    if train_fovs is None:
        train_fovs = _split_fovs(fovs, codes, train_ratio, random_state)
    train = np.isin(fovs, np.asarray(train_fovs).astype(str))
    x_train, y_train, x_test, y_test = x[train], codes[train], x[~train], codes[~train]
    if scale_features:
        scaler = require("sklearn.preprocessing", "eval").StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    classifier = linear_model.LogisticRegression(class_weight=class_weight, random_state=random_state, solver=solver)
    if solver == "liblinear" and len(np.unique(y_train)) > 2:
        classifier = require("sklearn.multiclass", "eval").OneVsRestClassifier(classifier)
    classifier.fit(x_train, y_train)
    print("Training set:\n" + metrics.classification_report(y_train, classifier.predict(x_train), zero_division=0))
    if len(x_test):
        print("Test set:\n" + metrics.classification_report(y_test, classifier.predict(x_test), zero_division=0))
    return classifier, ((x_train, y_train), (x_test, y_test))


def linear_from_binary_logistic_regression(logistic_regression: Any) -> nn.Linear:
    """Copy a fitted binary logistic regression into ``nn.Linear(in_features, 1)`` (eval mode)."""
    coef = np.asarray(logistic_regression.coef_, dtype=np.float32)
    if coef.shape[0] != 1:
        raise ValueError(f"expected a binary logistic regression (coef_ of 1 row), got coef_ shape {coef.shape}")
    linear = nn.Linear(coef.shape[1], 1)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(coef))
        linear.bias.copy_(torch.from_numpy(np.asarray(logistic_regression.intercept_, dtype=np.float32)))
    return linear.eval()


class AssembledClassifier(nn.Module):
    """An encoder's stem and trunk followed by a linear read-out, for attribution to input pixels.

    Parameters
    ----------
    backbone : nn.Module
        A ``viscy_models`` ``ContrastiveEncoder`` (anything with ``stem`` and ``encoder`` modules).
    classifier : nn.Linear
        Read-out of the encoder features (e.g. from :func:`linear_from_binary_logistic_regression`).
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Linear):
        super().__init__()
        for part in ("stem", "encoder"):
            if not hasattr(backbone, part):
                raise TypeError(f"backbone {type(backbone).__name__} has no '{part}' module")
        self.backbone = backbone
        self.classifier = classifier

    @staticmethod
    def scale_features(x: torch.Tensor) -> torch.Tensor:
        """Standardise each feature across the batch (population standard deviation)."""
        return (x - x.mean(dim=0, keepdim=True)) / x.std(dim=0, keepdim=True, unbiased=False)

    def forward(self, x: torch.Tensor, scale_features: bool = False) -> torch.Tensor:
        """Classify images ``x`` (B, C, Z, Y, X); optionally standardise the features first."""
        features = self.backbone.encoder(self.backbone.stem(x))
        if scale_features:
            features = self.scale_features(features)
        return self.classifier(features)

    def attribute_integrated_gradients(self, img: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Integrated-gradients attribution of the output to ``img`` (kwargs go to the constructor)."""
        attr = require("captum.attr", "lca", "attribute_integrated_gradients")
        return attr.IntegratedGradients(self, **kwargs).attribute(img)

    def attribute_occlusion(self, img: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Occlusion attribution of the output to ``img`` (kwargs go to ``Occlusion.attribute``)."""
        attr = require("captum.attr", "lca", "attribute_occlusion")
        return attr.Occlusion(self).attribute(img, **kwargs)
