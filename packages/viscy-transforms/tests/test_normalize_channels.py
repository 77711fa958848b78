import pytest
import torch

import viscy_transforms as vt
from viscy_transforms._typing import HCSStackIndex


def _norm_meta(batch=None):
    def stat(v):
        return torch.tensor(v) if batch is None else torch.full((batch,), float(v)) + torch.arange(batch)

    return {
        "Phase": {
            "fov_statistics": {"mean": stat(2.0), "std": stat(4.0), "median": stat(1.0), "iqr": stat(2.0)},
            "dataset_statistics": {"mean": stat(0.0), "std": stat(1.0), "median": stat(0.0), "iqr": stat(1.0)},
            "timepoint_statistics": {"mean": stat(5.0), "std": stat(2.0), "median": stat(5.0), "iqr": stat(1.0)},
        }
    }


def test_normalize_single_sample():
    x = torch.full((1, 2, 3, 3), 10.0)
    out = vt.NormalizeSampled(["Phase"], "fov_statistics")({"Phase": x, "norm_meta": _norm_meta()})
    torch.testing.assert_close(out["Phase"], torch.full_like(x, 2.0), rtol=1e-6, atol=0)
    out = vt.NormalizeSampled("Phase", "fov_statistics", "median", "iqr")({"Phase": x, "norm_meta": _norm_meta()})
    torch.testing.assert_close(out["Phase"], torch.full_like(x, 4.5), rtol=1e-6, atol=0)


def test_normalize_collated_batch_per_sample_statistics():
    x = torch.full((3, 1, 2, 3, 3), 10.0)
    out = vt.NormalizeSampled(["Phase"], "fov_statistics")({"Phase": x, "norm_meta": _norm_meta(3)})
    expected = torch.tensor([(10 - 2) / 4, (10 - 3) / 5, (10 - 4) / 6]).view(3, 1, 1, 1, 1).expand_as(x)
    torch.testing.assert_close(out["Phase"], expected, rtol=1e-6, atol=0)


def test_normalize_flattened_timepoint_level_and_remove_meta():
    x = torch.full((1, 2, 3, 3), 9.0)
    sample = {"Phase": x, "norm_meta": _norm_meta(), "index": 0}
    out = vt.NormalizeSampled(["Phase"], "timepoint_statistics", remove_meta=True)(sample)
    torch.testing.assert_close(out["Phase"], torch.full_like(x, 2.0), rtol=1e-6, atol=0)
    assert "norm_meta" not in out and out["index"] == 0


def test_normalize_missing_level_or_statistic_names_key_channel_level():
    sample = {"Phase": torch.zeros(1, 2, 2), "norm_meta": _norm_meta()}
    with pytest.raises(KeyError, match=r"'Phase'.*'plate_statistics'.*dataset_statistics"):
        vt.NormalizeSampled(["Phase"], "plate_statistics")(sample)
    with pytest.raises(KeyError, match=r"'p99'.*'Phase'.*statistics: \['iqr', 'mean', 'median', 'std'\]"):
        vt.NormalizeSampled(["Phase"], "fov_statistics", divisor="p99")(sample)
    sample["Nuclei"] = torch.zeros(1, 2, 2)
    with pytest.raises(KeyError, match="Nuclei"):
        vt.NormalizeSampled(["Nuclei"], "fov_statistics")(sample)
    with pytest.raises(KeyError, match="norm_meta"):
        vt.NormalizeSampled(["Phase"], "fov_statistics")({"Phase": torch.zeros(1)})
    with pytest.raises(TypeError, match="None"):
        vt.NormalizeSampled(["Phase"], "fov_statistics")({"Phase": torch.zeros(1), "norm_meta": None})


def test_stack_channels():
    sample = {"Phase": torch.zeros(1, 2, 3, 3), "Nuclei": torch.ones(1, 2, 3, 3), "Mem": torch.full((1, 2, 3, 3), 2.0)}
    sample["norm_meta"] = None
    out = vt.StackChannelsd({"source": "Phase", "target": ["Nuclei", "Mem"]})(sample)
    assert set(out) == {"source", "target"}
    assert out["source"].shape == (1, 2, 3, 3) and out["target"].shape == (2, 2, 3, 3)
    torch.testing.assert_close(out["target"][1], sample["Mem"][0])
    batched = {k: v[None].expand(4, -1, -1, -1, -1) for k, v in sample.items() if k != "norm_meta"}
    assert vt.StackChannelsd({"target": ["Nuclei", "Mem"]})(batched)["target"].shape == (4, 2, 2, 3, 3)
    with pytest.raises(KeyError, match="DAPI"):
        vt.StackChannelsd({"source": ["DAPI"]})(sample)


def test_tiled_crop_order_and_count():
    x = torch.arange(2 * 4 * 6 * 6, dtype=torch.float32).reshape(2, 4, 6, 6)
    meta = {"a": 1}
    tiles = vt.TiledSpatialCropSamplesd(["img"], (2, 3, 3), 8)({"img": x, "norm_meta": meta, "index": 5})
    assert len(tiles) == 8
    assert all(set(t) == {"img", "norm_meta"} and t["norm_meta"] is meta for t in tiles)
    torch.testing.assert_close(tiles[0]["img"], x[:, 0:2, 0:3, 0:3])
    torch.testing.assert_close(tiles[1]["img"], x[:, 0:2, 0:3, 3:6])  # X fastest
    torch.testing.assert_close(tiles[2]["img"], x[:, 0:2, 3:6, 0:3])
    torch.testing.assert_close(tiles[4]["img"], x[:, 2:4, 0:3, 0:3])
    with pytest.raises(ValueError, match="9 should not exceed.*8"):
        vt.TiledSpatialCropSamplesd(["img"], (2, 3, 3), 9)({"img": x})


@pytest.mark.parametrize("shape", [(3, 1, 4, 4), (1, 2, 4, 4, 4)])
def test_decollate(shape):
    x = torch.rand(shape)
    out = vt.Decollate()(x)
    assert isinstance(out, list) and len(out) == shape[0]
    for b, item in enumerate(out):
        torch.testing.assert_close(item, x[b])


def test_typing_module():
    import viscy_transforms._typing as typing_module

    assert sorted(typing_module.__all__) == sorted(
        ["OneOrSeq", "LevelNormStats", "ChannelNormStats", "NormMeta", "HCSStackIndex", "Sample", "ChannelMap"]
    )
    assert HCSStackIndex("A/1/0", 3, 4).time == 3
