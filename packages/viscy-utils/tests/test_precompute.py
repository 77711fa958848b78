import dask.array as da
import numpy as np
import pytest

from viscy_utils.precompute import precompute_array


def _npy_stack(path):
    return da.from_npy_stack(path).compute()


def test_zscore_per_well_is_correctly_scaled(plate, tmp_path):
    path, arrays = plate
    out = tmp_path / "out"
    precompute_array(path, out, ["GFP", "Phase3D"], ["mean", "mean"], ["std", "std"])
    stack = _npy_stack(out)
    assert stack.dtype == np.float16
    assert stack.shape == (4, 3, 2, 2, 40, 36)  # FOVs, T, C (in requested order), Z, Y, X
    # well A/1 has two FOVs normalised jointly; wells A/2 and B/1 one each
    well = np.stack([arrays["A/1/0"][:, 1], arrays["A/1/1"][:, 1]]).astype(np.float64)
    expected = (well - well.mean()) / well.std()
    np.testing.assert_allclose(stack[:2, :, 0], expected, atol=2e-3, rtol=2e-3)
    # every well is standardised: the reference divided by min(std, 1e-6) and was off by 1e6
    for block in (stack[:2], stack[2:3], stack[3:4]):
        for c in range(2):
            values = block[:, :, c].astype(np.float64)
            assert abs(values.mean()) < 1e-3
            assert values.std() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(np.load(out / "3.npy")[0], stack[3])


def test_percentile_mode_and_filters(plate, tmp_path):
    path, arrays = plate
    out = tmp_path / "out"
    precompute_array(path, out, ["Mito"], [50.0], [(1.0, 99.0)], include_wells=["A/1", "B/1"], exclude_fovs=["A/1/1"])
    stack = _npy_stack(out)
    assert stack.shape[0] == 2  # A/1/0 and B/1/0
    for i, name in enumerate(["A/1/0", "B/1/0"]):
        x = arrays[name][:, 2].astype(np.float64)
        p50, p1, p99 = np.percentile(x, [50, 1, 99])
        np.testing.assert_allclose(stack[i, :, 0], (x - p50) / (p99 - p1), atol=2e-3, rtol=2e-3)


def test_constant_channel_gives_zeros_not_infinities(tmp_path, write_plate):
    path = tmp_path / "plate.zarr"
    write_plate(path, fovs=[("A", "1", "0")], shape=(1, 1, 8, 8), channels=["C"])
    from iohub import open_ome_zarr

    with open_ome_zarr(path, mode="r+") as p:
        p["A/1/0"]["0"][:] = 7.0
    precompute_array(path, tmp_path / "out", ["C"], ["mean"], ["std"])
    stack = _npy_stack(tmp_path / "out")
    assert np.all(stack == 0)


def test_validation_errors(plate, tmp_path):
    path, _ = plate
    with pytest.raises(ValueError, match="one subtrahend and one divisor per channel"):
        precompute_array(path, tmp_path / "o", ["GFP", "Mito"], ["mean"], ["std"])
    with pytest.raises(ValueError, match="channel 'GFP'.*'mean' goes with divisor 'std'"):
        precompute_array(path, tmp_path / "o", ["GFP"], ["mean"], [(1, 99)])
    with pytest.raises(ValueError, match="channel 'GFP'.*percentiles"):
        precompute_array(path, tmp_path / "o", ["GFP"], [50], [(99, 1)])
    with pytest.raises(ValueError, match=r"\['Nope'\] not in .*available"):
        precompute_array(path, tmp_path / "o", ["Nope"], ["mean"], ["std"])
    with pytest.raises(ValueError, match="no FOV"):
        precompute_array(path, tmp_path / "o", ["GFP"], ["mean"], ["std"], include_wells=["Z/9"])
    # nothing half-written is left behind
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o")]
    (tmp_path / "o").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        precompute_array(path, tmp_path / "o", ["GFP"], ["mean"], ["std"])
