"""OME-Zarr (iohub) datasets and Lightning DataModules for live-cell microscopy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-data")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
