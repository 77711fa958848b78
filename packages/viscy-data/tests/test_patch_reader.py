import os
import pickle

import numpy as np
import pytest
import torch
from iohub.ngff import open_ome_zarr

from viscy_data.patch_reader import FovArray, PatchReader, array_spec, open_array, tensorstore_context

T, C, Z, Y, X = 3, 3, 4, 20, 24


def _pixels(fov: int, dtype) -> np.ndarray:
    """Every voxel encodes where it is: fov, t, c, z, y, x."""
    t, c, z, y, x = np.meshgrid(*(np.arange(n) for n in (T, C, Z, Y, X)), indexing="ij")
    return (fov * 10000 + t * 1000 + c * 100 + z * 10 + (y + x) % 10).astype(dtype)


@pytest.fixture(scope="module", params=["0.4", "0.5-sharded"])
def plate(request, tmp_path_factory):
    version = request.param.split("-")[0]
    path = tmp_path_factory.mktemp(request.param) / "plate.zarr"
    channels = ["Phase", "GFP", "RFP"]
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=channels, version=version) as p:
        for f, (row, col) in enumerate([("A", "1"), ("B", "2")]):
            pos = p.create_position(row, col, "0")
            if version == "0.5":  # 2 x 2 chunks of (1, 1, 2, 10, 12) per shard
                pos.create_image("0", _pixels(f, np.uint16), chunks=(1, 1, 2, 10, 12), shards_ratio=(1, 1, 1, 2, 2))
            else:
                pos.create_image("0", _pixels(f, np.uint16), chunks=(1, 1, 2, 10, 12))
    plate = open_ome_zarr(path, layout="hcs", mode="r")
    yield [pos for _, pos in plate.positions()]
    plate.close()


def _expected(fov, t, channels, z0, y0, x0, shape):
    """Reference patch by numpy: zeros outside the image and for None channels."""
    nz, ny, nx = shape
    full = _pixels(fov, np.float32)
    out = np.zeros((len(channels), nz, ny, nx), dtype=np.float32)
    for k, c in enumerate(channels):
        if c is None:
            continue
        for dz in range(nz):
            for dy in range(ny):
                for dx in range(nx):
                    z, y, x = z0 + dz, y0 + dy, x0 + dx
                    if 0 <= z < Z and 0 <= y < Y and 0 <= x < X:
                        out[k, dz, dy, dx] = full[t, c, z, y, x]
    return out


def test_fov_array_from_position_and_spec(plate):
    fov = FovArray.from_position(plate[0])
    assert fov.channel_names == ("Phase", "GFP", "RFP") and fov.label == "A/1/0"
    assert array_spec(fov.path)["driver"] in ("zarr", "zarr3")
    with pytest.raises(KeyError, match="no array '1'"):
        FovArray.from_position(plate[0], array_key="1")
    with pytest.raises(FileNotFoundError, match="no zarr array"):
        array_spec(os.path.dirname(fov.path))


@pytest.mark.parametrize(
    ("channels", "indices"),
    [(["Phase", "GFP"], [0, 1]), (["RFP", "Phase"], [2, 0]), (["GFP", None, "RFP"], [1, None, 2])],
)
def test_batch_matches_numpy_inside_and_across_borders(plate, channels, indices):
    reader = PatchReader([FovArray.from_position(p) for p in plate], channels, (8, 10), (1, 3))
    requests = {  # inside, over the top-left corner, over the bottom-right corner, Z beyond the stack
        "fov": [0, 1, 1, 0],
        "t": [2, 0, 1, 1],
        "y0": [5, -3, 15, 2],
        "x0": [7, -4, 19, 3],
        "z0": [1, 1, 1, 3],
    }
    out = reader.read(**requests)
    assert out.shape == (4, len(channels), 2, 8, 10) and out.dtype == torch.float32
    for k in range(4):
        fov, t, y0, x0, z0 = (requests[key][k] for key in ("fov", "t", "y0", "x0", "z0"))
        expected = _expected(fov, t, indices, z0, y0, x0, (2, 8, 10))
        np.testing.assert_array_equal(out[k].numpy(), expected)


def test_per_fov_channel_lists_and_window_outside_the_image(plate):
    arrays = [FovArray.from_position(p, label=f"exp{i}:{p.zgroup.name}") for i, p in enumerate(plate)]
    reader = PatchReader(arrays, [["Phase", "GFP"], [None, "RFP"]], (4, 4), (0, 1))
    out = reader.read(fov=[0, 1, 1], t=[0, 0, 0], y0=[0, 0, 100], x0=[0, 0, 100])
    np.testing.assert_array_equal(out[0].numpy(), _expected(0, 0, [0, 1], 0, 0, 0, (1, 4, 4)))
    np.testing.assert_array_equal(out[1].numpy(), _expected(1, 0, [None, 2], 0, 0, 0, (1, 4, 4)))
    assert torch.all(out[2] == 0)  # nothing of the image in the window


def test_out_tensor_is_filled_and_stale_values_cleared(plate):
    reader = PatchReader([FovArray.from_position(plate[0])], ["Phase", None], (6, 6), (0, 2))
    out = torch.full((2, *reader.patch_shape), 7.0)
    result = reader.read([0, 0], [1, 2], [-2, 3], [0, 3], out=out)
    assert result is out
    np.testing.assert_array_equal(out[0].numpy(), _expected(0, 1, [0, None], 0, -2, 0, (2, 6, 6)))
    np.testing.assert_array_equal(out[1].numpy(), _expected(0, 2, [0, None], 0, 3, 3, (2, 6, 6)))
    with pytest.raises(ValueError, match="out must be"):
        reader.read([0], [0], [0], [0], out=torch.empty(2, *reader.patch_shape))
    assert reader.read([], [], [], []).shape == (0, 2, 2, 6, 6)


def test_errors_name_the_fov_channel_or_request(plate):
    arrays = [FovArray.from_position(p) for p in plate]
    with pytest.raises(ValueError, match=r"\['DAPI'\] not found in FOV 'B/2/0'.*'Phase', 'GFP', 'RFP'"):
        PatchReader(arrays, [["Phase"], ["DAPI"]], (4, 4), (0, 1))
    with pytest.raises(ValueError, match="different lengths"):
        PatchReader(arrays, [["Phase"], ["Phase", "GFP"]], (4, 4), (0, 1))
    with pytest.raises(ValueError, match="z_range"):
        PatchReader(arrays, ["Phase"], (4, 4), slice(0, None))
    reader = PatchReader(arrays, ["Phase"], (4, 4), (0, 1))
    with pytest.raises(IndexError, match="timepoint 3 out of range for FOV 'A/1/0' \\(3 frames\\)"):
        reader.read([0], [3], [0], [0])
    with pytest.raises(IndexError, match="FOV index"):
        reader.read([2], [0], [0], [0])
    with pytest.raises(ValueError, match="one entry per request"):
        reader.read([0, 1], [0], [0], [0])


def test_arrays_open_once_per_process_and_settings(plate):
    path = FovArray.from_position(plate[0]).path
    assert open_array(path) is open_array(path)
    assert open_array(path, cache_pool_bytes=1 << 20) is not open_array(path)
    assert tensorstore_context(1 << 20, 2) is tensorstore_context(1 << 20, 2)
    a = PatchReader([FovArray.from_position(plate[0])], ["GFP"], (4, 4), (0, 1))
    b = PatchReader([FovArray.from_position(plate[0])], ["RFP", "Phase"], (2, 2), (1, 2))
    assert a.array(0) is b.array(0)
    with pytest.raises(ValueError, match="cache_pool_bytes"):
        open_array(path, cache_pool_bytes=-1)


def test_pickled_reader_reopens_and_reads_the_same(plate):
    reader = PatchReader([FovArray.from_position(p) for p in plate], ["GFP", "Phase"], (5, 7), (0, 4))
    before = reader.read([1, 0], [2, 1], [3, 12], [4, 17])
    clone = pickle.loads(pickle.dumps(reader))
    assert all(h is None for h in clone._handles)
    assert torch.equal(clone.read([1, 0], [2, 1], [3, 12], [4, 17]), before)


def test_missing_tensorstore_names_the_user_and_the_extra(plate, monkeypatch):
    import sys

    from viscy_data.patch_reader import require_tensorstore

    monkeypatch.setitem(sys.modules, "tensorstore", None)
    with pytest.raises(ImportError, match=r"tensorstore is required for TripletDataset.*viscy-data\[triplet\]"):
        require_tensorstore("TripletDataset")
    with pytest.raises(ImportError, match="required for PatchReader"):
        PatchReader([FovArray.from_position(plate[0])], ["GFP"], (4, 4), (0, 1))


def test_fovs_of_different_dtypes_in_one_batch(plate, tmp_path):
    with open_ome_zarr(tmp_path / "f32.zarr", layout="hcs", mode="w-", channel_names=["Phase", "GFP", "RFP"]) as p:
        p.create_position("C", "3", "0").create_image("0", _pixels(2, np.float32) + 0.5)
    other = open_ome_zarr(tmp_path / "f32.zarr", layout="hcs", mode="r")
    arrays = [FovArray.from_position(plate[0]), FovArray.from_position(other["C/3/0"])]
    reader = PatchReader(arrays, ["RFP", "GFP"], (4, 6), (1, 3))
    out = reader.read(fov=[1, 0, 1, 0], t=[0, 1, 2, 2], y0=[3, 4, 5, 6], x0=[1, 2, 3, 4])
    for k, (f, t, y, x) in enumerate([(1, 0, 3, 1), (0, 1, 4, 2), (1, 2, 5, 3), (0, 2, 6, 4)]):
        expected = _expected(2 if f else 0, t, [2, 1], 1, y, x, (2, 4, 6)) + (0.5 if f else 0.0)
        np.testing.assert_array_equal(out[k].numpy(), expected)
    other.close()
