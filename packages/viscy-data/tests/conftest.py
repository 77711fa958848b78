"""Shared fixtures: small synthetic plates written once per session (read-only for tests)."""

import warnings

import pytest

from viscy_data.synthetic import write_synthetic_plate


@pytest.fixture(autouse=True)
def _quiet_tracks_csv_in_store():
    # the synthetic plate keeps tracks CSVs inside the store, which zarr notes as unknown objects
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        yield


@pytest.fixture(scope="session", params=["0.4", "0.5"])
def synthetic_plate(request, tmp_path_factory):
    """A 4-well plate (one FOV per well, T=8, Z=4, 128x128, 2 channels), both NGFF versions."""
    path = tmp_path_factory.mktemp(f"plate_{request.param}") / "plate.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_synthetic_plate(path, version=request.param, seed=1)


@pytest.fixture(scope="session")
def plate_v04(tmp_path_factory):
    """A 0.4 plate with 2 FOVs per well (8 FOVs)."""
    path = tmp_path_factory.mktemp("plate8") / "plate.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_synthetic_plate(path, fovs_per_well=2, seed=2)
