"""VisCy: deep learning for live-cell microscopy.

This umbrella distribution installs the four libraries of the project:

- :mod:`viscy_transforms` -- batched, GPU-friendly dictionary transforms for (B, C, Z, Y, X) stacks;
- :mod:`viscy_data` -- OME-Zarr datasets and Lightning DataModules;
- :mod:`viscy_models` -- pure ``torch.nn.Module`` architectures;
- :mod:`viscy_utils` -- the Lightning CLI, callbacks, normalisation statistics and evaluation.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
