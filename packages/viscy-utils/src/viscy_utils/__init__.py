"""Lightning CLI and trainer, callbacks, normalisation statistics and evaluation for VisCy.

The seven public helpers are imported on first use, so ``import viscy_utils`` (and the ``viscy``
command's start-up) stays cheap.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("viscy-utils")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

#: public name -> module that defines it
_LAZY = {
    "detach_sample": "viscy_utils.log_images",
    "render_images": "viscy_utils.log_images",
    "get_val_stats": "viscy_utils.mp_utils",
    "mp_wrapper": "viscy_utils.mp_utils",
    "hist_clipping": "viscy_utils.normalize",
    "unzscore": "viscy_utils.normalize",
    "zscore": "viscy_utils.normalize",
}

__all__ = ["detach_sample", "render_images", "get_val_stats", "mp_wrapper", "hist_clipping", "unzscore", "zscore"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
