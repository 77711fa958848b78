"""Lightning CLI and trainer, callbacks, normalisation statistics and evaluation for VisCy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-utils")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
