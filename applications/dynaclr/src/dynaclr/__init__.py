"""DynaCLR: contrastive learning of cell dynamics from live-cell microscopy.

Public names are resolved lazily on first access so that ``import dynaclr`` (and the ``dynaclr``
command's ``--help``) does not pay for torch, Lightning and the model zoo.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dynaclr")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

_EXPORTS = {
    "BetaVaeModule": "dynaclr.engine",
    "ContrastiveModule": "dynaclr.engine",
    "ContrastivePrediction": "dynaclr.engine",
    "ExperimentConfig": "dynaclr.experiment",
    "ExperimentRegistry": "dynaclr.experiment",
    "MultiExperimentDataModule": "dynaclr.datamodule",
    "MultiExperimentIndex": "dynaclr.index",
    "MultiExperimentTripletDataset": "dynaclr.dataset",
    "NTXentHCL": "dynaclr.loss",
    "sample_tau": "dynaclr.tau_sampling",
}

__all__ = sorted(_EXPORTS)

# Re-exported for convenience (they live in viscy-data), outside ``__all__``, which the spec fixes.
_EXPORTS |= {
    "ChannelDropout": "viscy_data.channel_dropout",
    "FlexibleBatchSampler": "viscy_data.sampler",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynaclr' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
