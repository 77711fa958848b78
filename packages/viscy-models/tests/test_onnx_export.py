"""ONNX export with a dynamic batch axis: onnxruntime must reproduce the torch outputs."""

import numpy as np
import onnx
import onnxruntime as ort
import torch

from viscy_models import ContrastiveEncoder, UNeXt2


def _export_and_compare(model, example, names, tmp_path):
    path = tmp_path / "model.onnx"
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=["x"],
        output_names=names,
        dynamic_axes={"x": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        dynamo=False,
    )
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, *example.shape[1:])
        with torch.no_grad():
            expected = model(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {"x": x.numpy()})
        for e, g in zip(expected, got):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), rtol=1e-3, atol=1e-4)


def test_contrastive_encoder_onnx(tmp_path):
    torch.manual_seed(0)
    model = ContrastiveEncoder("convnext_atto", 2, 10, embedding_dim=64, projection_dim=16)
    _export_and_compare(model, torch.randn(2, 2, 10, 64, 64), ["embedding", "projection"], tmp_path)


def test_unext2_onnx(tmp_path):
    torch.manual_seed(0)
    model = UNeXt2(in_channels=1, out_channels=2, backbone="convnextv2_atto", decoder_conv_blocks=1)
    _export_and_compare(model, torch.randn(2, 1, 5, 64, 64), ["prediction"], tmp_path)
