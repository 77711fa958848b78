"""Configs of one run derived from a ``dynaclr fit`` config, for driving ``dynaclr fit``/``predict`` from Python.

``dynaclr demo`` and the FUCCI example train several runs (seeds, ablations) from one template and embed with
each: :func:`fit_run_config` fills in a run's paths, seed and data overrides; :func:`predict_run_config` turns
a fit config into the ``dynaclr predict`` config that embeds with the same model and data pipeline; and
:func:`write_config` saves either for ``dynaclr fit -c`` / ``dynaclr predict -c``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

__all__ = ["fit_run_config", "predict_run_config", "write_config"]

#: trainer keys of a fit config that mean nothing to prediction
_FIT_ONLY_TRAINER_KEYS = ("max_epochs", "log_every_n_steps", "num_sanity_val_steps", "limit_val_batches")


def fit_run_config(
    template: dict,
    *,
    log_dir: str | Path,
    checkpoint_dir: str | Path,
    seed: int,
    max_epochs: int | None = None,
    log_version: str | None = None,
    data: dict | None = None,
) -> dict:
    """Fill a ``dynaclr fit`` config with one run's paths, seed and data arguments.

    Parameters
    ----------
    template : dict
        A fit config as read from YAML (``trainer``, ``model``, ``data``); not modified.
    log_dir : str or pathlib.Path
        ``save_dir`` of the trainer's logger.
    checkpoint_dir : str or pathlib.Path
        ``dirpath`` of every ``ModelCheckpoint`` callback.
    seed : int
        ``seed_everything`` and the data module's ``seed``.
    max_epochs : int, optional
        Overrides the template's ``trainer.max_epochs``.
    log_version : str, optional
        Overrides the logger's ``version``.
    data : dict, optional
        Data module ``init_args`` to set (e.g. ``experiments_yaml``, ``same_frame_positives``).

    Returns
    -------
    dict
        A new config.

    Raises
    ------
    KeyError
        If the template has no ``trainer.logger.init_args`` or no ``data.init_args``.
    """
    config = copy.deepcopy(template)
    config["seed_everything"] = seed
    trainer = config["trainer"]
    if max_epochs is not None:
        trainer["max_epochs"] = max_epochs
    trainer["logger"]["init_args"]["save_dir"] = str(log_dir)
    if log_version is not None:
        trainer["logger"]["init_args"]["version"] = log_version
    for callback in trainer.get("callbacks") or []:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(checkpoint_dir)
    init_args = config["data"]["init_args"]
    init_args.update(data or {})
    init_args["seed"] = seed
    return config


def predict_run_config(
    fit_config: dict,
    store: str | Path,
    *,
    log_dir: str | Path,
    checkpoint: str | Path | None = None,
    data: dict | None = None,
) -> dict:
    """Turn a fit config into the ``dynaclr predict`` config that writes embeddings with its model and data.

    Parameters
    ----------
    fit_config : dict
        As returned by :func:`fit_run_config`; not modified.
    store : str or pathlib.Path
        Output of the ``EmbeddingWriter`` (an AnnData zarr store).
    log_dir : str or pathlib.Path
        ``trainer.default_root_dir``: without a logger the CLI saves its ``config.yaml`` there (the working
        directory otherwise).
    checkpoint : str or pathlib.Path, optional
        Weights to embed with (``ckpt_path``); None embeds with the model's initial weights.
    data : dict, optional
        Data module ``init_args`` to set (e.g. ``predict_experiments``).

    Returns
    -------
    dict
        A new config: no logger, no progress bar, the ``EmbeddingWriter`` as the only callback.
    """
    config = copy.deepcopy(fit_config)
    trainer = config["trainer"]
    for key in _FIT_ONLY_TRAINER_KEYS:
        trainer.pop(key, None)
    trainer["logger"] = False
    trainer["default_root_dir"] = str(log_dir)
    trainer["enable_progress_bar"] = False
    trainer["callbacks"] = [
        {
            "class_path": "viscy_utils.callbacks.embedding_writer.EmbeddingWriter",
            "init_args": {"output_path": str(store)},
        }
    ]
    config["data"]["init_args"].update(data or {})
    config["return_predictions"] = False
    if checkpoint is not None:
        config["ckpt_path"] = str(checkpoint)
    return config


def write_config(config: dict, path: str | Path) -> Path:
    """Write ``config`` as YAML to ``path`` (parent folders created), keys in their order.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
