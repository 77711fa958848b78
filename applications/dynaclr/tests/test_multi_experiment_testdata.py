from _mx_testdata import make_experiment  # loaded by conftest.py
from iohub.ngff import open_ome_zarr


def test_make_experiment_encodes_values(tmp_path):
    cfg = make_experiment(tmp_path, "e", code=3, n_t=4)
    with open_ome_zarr(cfg.data_path, mode="r") as plate:
        arr = plate["A/1/0"]["0"]
        assert arr.shape == (4, 2, 4, 64, 64)
        assert arr[2, 1, 0, 5, 5] == 3000 + 100 + 2
