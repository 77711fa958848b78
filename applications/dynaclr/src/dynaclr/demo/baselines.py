"""Non-learned baselines of the demo: raw pixels and hand-made disc intensity features.

Both start from the patches an encoder sees at prediction time (read, normalised and centre-cropped by the
same ``MultiExperimentDataModule``), so they differ from the encoders only in the representation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DISC_RADII", "baseline_features", "read_patches"]

#: discs of the hand-made features, in pixels: about the synthetic nucleus and the whole synthetic cell
DISC_RADII = {"nucleus": 3.0, "cell": 7.0}


def read_patches(datamodule) -> tuple[np.ndarray, pd.DataFrame]:
    """Every predicted cell's patch, normalised and cropped exactly as for ``dynaclr predict``.

    Parameters
    ----------
    datamodule : dynaclr.datamodule.MultiExperimentDataModule
        Set up for prediction (e.g. the one a ``dynaclr predict`` run used).

    Returns
    -------
    tuple
        ``(N, C, Z, Y, X)`` float32 patches in prediction order and their ``fov_name, track_id, t, y, x``.
    """
    patches, index = [], []
    for batch in datamodule.predict_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        patches.append(batch["anchor"].detach().cpu().numpy().astype(np.float32))
        index.extend(batch["index"])
    return np.concatenate(patches), pd.DataFrame(index)[["fov_name", "track_id", "t", "y", "x"]]


def baseline_features(patches: np.ndarray, channel_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Compute the non-learned representations of a batch of cell-centred patches.

    Parameters
    ----------
    patches : numpy.ndarray
        ``(N, C, Z, Y, X)`` normalised patches.
    channel_names : list of str, optional
        Names of the channels (feature names only).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"raw_pixels"``: every voxel of the patch; ``"disc_features"``: mean, sd, min, max and median of every
        channel in a nucleus-sized and a cell-sized disc (:data:`DISC_RADII`).
    """
    from viscy_utils.evaluation.feature import disc_intensity_features

    discs = disc_intensity_features(patches, DISC_RADII, channel_names)
    return {
        "raw_pixels": patches.reshape(len(patches), -1),
        "disc_features": discs.to_numpy(dtype=np.float32),
    }
