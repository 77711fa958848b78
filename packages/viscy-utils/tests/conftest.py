"""Fixtures of the viscy-utils tests: tiny HCS plates written with iohub."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from iohub import open_ome_zarr

TESTS_DIR = Path(__file__).resolve().parent

CHANNELS = ["Phase3D", "GFP", "Mito"]
FOVS = [("A", "1", "0"), ("A", "1", "1"), ("A", "2", "0"), ("B", "1", "0")]


def write_plate(
    path: Path,
    *,
    shape: tuple[int, int, int, int] = (3, 2, 40, 36),
    fovs: list[tuple[str, str, str]] = FOVS,
    channels: list[str] = CHANNELS,
    seed: int = 0,
    version: str = "0.4",
    dtype: str = "float32",
) -> dict[str, np.ndarray]:
    """Write an HCS plate of random images (T, C, Z, Y, X) = (shape[0], len(channels), *shape[1:]).

    Every channel has its own offset and scale so that channel mix-ups show in the statistics.
    Returns the written arrays keyed by FOV name.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=channels, version=version) as plate:
        for row, col, fov in fovs:
            t, z, y, x = shape
            data = rng.normal(size=(t, len(channels), z, y, x))
            data = (
                data * (1 + np.arange(len(channels)))[None, :, None, None, None]
                + 10 * np.arange(len(channels))[None, :, None, None, None]
            )
            data = data.astype(dtype)
            plate.create_position(row, col, fov).create_image("0", data)
            arrays[f"{row}/{col}/{fov}"] = data
    return arrays


@pytest.fixture(name="write_plate")
def write_plate_fixture():
    """The :func:`write_plate` function (test modules cannot import conftest under importlib mode)."""
    return write_plate


@pytest.fixture
def channels() -> list[str]:
    """Channel names of :func:`write_plate` plates."""
    return list(CHANNELS)


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch):
    """Make ``vu_toys`` (tiny LightningModule/DataModule for CLI tests) importable by class path."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    import vu_toys

    return vu_toys


@pytest.fixture
def plate(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A small 4-FOV, 3-channel, 3-timepoint plate (NGFF 0.4)."""
    path = tmp_path / "plate.zarr"
    return path, write_plate(path)
