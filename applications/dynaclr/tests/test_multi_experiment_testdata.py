import importlib.util
import pathlib
import sys

from iohub.ngff import open_ome_zarr


def _load_testdata():
    """Import the shared ``_mx_testdata`` helpers from this directory, once per session."""
    if "_mx_testdata" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_mx_testdata", pathlib.Path(__file__).with_name("_mx_testdata.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["_mx_testdata"] = module
        spec.loader.exec_module(module)
    return sys.modules["_mx_testdata"]


make_experiment = _load_testdata().make_experiment


def test_make_experiment_encodes_values(tmp_path):
    cfg = make_experiment(tmp_path, "e", code=3, n_t=4)
    with open_ome_zarr(cfg.data_path, mode="r") as plate:
        arr = plate["A/1/0"]["0"]
        assert arr.shape == (4, 2, 4, 64, 64)
        assert arr[2, 1, 0, 5, 5] == 3000 + 100 + 2
