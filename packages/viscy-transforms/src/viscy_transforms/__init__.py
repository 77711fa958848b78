"""Batched, GPU-friendly MONAI-style dictionary transforms for (B, C, Z, Y, X) microscopy stacks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-transforms")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
