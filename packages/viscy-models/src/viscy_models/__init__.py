"""Pure torch.nn.Module architectures for virtual staining and representation learning of cells."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("viscy-models")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
