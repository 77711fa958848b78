import logging
import sys
import types

import lightning
import numpy as np
import onnxruntime as ort
import pytest
import torch
from iohub import open_ome_zarr

from viscy_utils.trainer import VisCyTrainer


def _trainer(tmp_path):
    return VisCyTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)


def _checkpoint(model, path):
    torch.save({"state_dict": model.state_dict(), "pytorch-lightning_version": lightning.__version__}, path)


def test_export_onnx_runs_with_dynamic_axes(tmp_path, toys):
    source = toys.ToyModule(hidden=2)
    ckpt = tmp_path / "m.ckpt"
    _checkpoint(source, ckpt)
    out = tmp_path / "m.onnx"
    _trainer(tmp_path).export(toys.ToyModule(hidden=2), out, ckpt, format="ONNX")
    session = ort.InferenceSession(str(out))
    assert [o.name for o in session.get_outputs()] == ["output"]
    x = torch.rand(3, 1, 2, 16, 12)  # other batch size and YX size than the example input
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = source(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("names", [None, ["features", "projections"]])
def test_export_two_outputs_are_named_and_equal_the_checkpoint_outputs(tmp_path, toys, names):
    torch.manual_seed(1)
    model = toys.ToyModule(two_outputs=True)
    ckpt = tmp_path / "m.ckpt"
    _checkpoint(model, ckpt)
    out = tmp_path / "m.onnx"
    # a freshly initialised module: the export must take the checkpoint's weights, not its own
    _trainer(tmp_path).export(toys.ToyModule(two_outputs=True), out, ckpt, output_names=names)
    session = ort.InferenceSession(str(out))
    assert [o.name for o in session.get_outputs()] == (names or ["output_0", "output_1"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    x = np.random.default_rng(0).random((5, 1, 2, 8, 8), dtype=np.float32)
    features, projections = session.run(None, {"input": x})
    with torch.no_grad():
        expected_features, expected_projections = model.eval()(torch.from_numpy(x))
    assert features.shape == (5, 2) and projections.shape == (5, 3)
    np.testing.assert_allclose(features, expected_features.numpy(), atol=1e-5)
    np.testing.assert_allclose(projections, expected_projections.numpy(), atol=1e-5)


def test_export_errors(tmp_path, toys):
    trainer = _trainer(tmp_path)
    with pytest.raises(NotImplementedError, match="Export format 'torchscript'"):
        trainer.export(toys.ToyModule(), tmp_path / "m", tmp_path / "m.ckpt", format="torchscript")
    ckpt = tmp_path / "m.ckpt"
    _checkpoint(toys.ToyModule(hidden=4), ckpt)
    with pytest.raises(RuntimeError, match="size mismatch"):  # strict state_dict loading
        trainer.export(toys.ToyModule(hidden=2), tmp_path / "m.onnx", ckpt)


def test_preprocess_maps_channel_names_and_warns_about_model(plate, tmp_path, toys, caplog):
    path, _ = plate
    with caplog.at_level(logging.WARNING, logger="lightning.pytorch"):
        logging.getLogger("lightning.pytorch").propagate = True
        try:
            _trainer(tmp_path).preprocess(path, channel_names=["Mito"], block_size=8, model=toys.ToyModule())
        finally:
            logging.getLogger("lightning.pytorch").propagate = False
    assert "Ignoring model configuration" in caplog.text
    with open_ome_zarr(path, mode="r") as p:
        assert list(p.zattrs["normalization"]) == ["Mito"]
    with pytest.raises(ValueError, match=r"\['Nope'\] not in .*available: \['Phase3D', 'GFP', 'Mito'\]"):
        _trainer(tmp_path).preprocess(path, channel_names=["Nope"])


def test_precompute_delegates(plate, tmp_path):
    path, arrays = plate
    out = tmp_path / "pre"
    _trainer(tmp_path).precompute(path, out, ["GFP"], ["mean"], ["std"], include_wells=["A/2"])
    stack = np.load(out / "0.npy")
    assert stack.shape == (1, 3, 1, 2, 40, 36)
    x = arrays["A/2/0"][:, 1].astype(np.float64)
    np.testing.assert_allclose(stack[0, :, 0], (x - x.mean()) / x.std(), atol=5e-3)


def test_convert_to_anndata_delegates(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("viscy_utils.evaluation.annotation")
    fake.convert = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "viscy_utils.evaluation.annotation", fake)
    _trainer(tmp_path).convert_to_anndata(str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), overwrite=True)
    assert calls == [
        {
            "embeddings_ds": tmp_path / "in.zarr",
            "output_path": tmp_path / "out.zarr",
            "overwrite": True,
            "return_anndata": False,
        }
    ]
