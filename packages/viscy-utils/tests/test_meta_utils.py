import json

import numpy as np
import pytest
from iohub import open_ome_zarr

from viscy_data.norm_meta import STATISTICS, compute_statistics, read_norm_meta, select_timepoint
from viscy_utils import meta_utils
from viscy_utils.meta_utils import generate_normalization_metadata, write_meta_field


def _expected(arrays, c, g):
    samples = [a[:, c, :, ::g, ::g] for a in arrays.values()]
    fov = {name: compute_statistics(a[:, c, :, ::g, ::g]) for name, a in arrays.items()}
    dataset = compute_statistics(np.stack(samples))
    per_t = {str(t): compute_statistics(np.stack([s[t] for s in samples])) for t in range(samples[0].shape[0])}
    return fov, dataset, per_t


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("grid", [1, 7])
def test_statistics_equal_numpy_exactly_and_read_back_by_viscy_data(tmp_path, version, grid, write_plate, channels):
    path = tmp_path / "plate.zarr"
    arrays = write_plate(path, version=version)
    generate_normalization_metadata(path, num_workers=2, channel_ids=[0, 2], grid_spacing=grid)
    with open_ome_zarr(path, mode="r") as plate:
        plate_meta = plate.zattrs["normalization"]
        assert set(plate_meta) == {"Phase3D", "Mito"}
        for c in (0, 2):
            fov, dataset, per_t = _expected(arrays, c, grid)
            name = channels[c]
            # exact equality with numpy on the same pixels
            assert plate_meta[name]["dataset_statistics"] == dataset
            assert plate_meta[name]["timepoint_statistics"] == per_t
            assert list(plate_meta[name]["dataset_statistics"]) == list(STATISTICS)
            assert "fov_statistics" not in plate_meta[name]
            for fov_name, position in plate.positions():
                meta = position.zattrs["normalization"][name]
                assert list(meta) == ["dataset_statistics", "fov_statistics", "timepoint_statistics"]
                assert meta["fov_statistics"] == fov[fov_name]
                assert meta["dataset_statistics"] == dataset
                assert meta["timepoint_statistics"] == per_t
                # viscy-data's reader accepts what we wrote (the reference crashed on timepoint_statistics)
                norm = read_norm_meta(position.zattrs)
                assert float(norm[name]["fov_statistics"]["mean"]) == pytest.approx(fov[fov_name]["mean"], rel=1e-6)
                flat = select_timepoint(norm, 2)
                assert float(flat[name]["timepoint_statistics"]["std"]) == pytest.approx(per_t["2"]["std"], rel=1e-6)
    # the channels differ (offset 10 per channel) so a mix-up would show
    assert plate_meta["Mito"]["dataset_statistics"]["mean"] == pytest.approx(20, abs=0.5)


def test_all_channels_by_default_and_attributes_are_json(plate, channels):
    path, arrays = plate
    generate_normalization_metadata(path, num_workers=1, grid_spacing=4)
    with open_ome_zarr(path, mode="r") as p:
        assert set(p.zattrs["normalization"]) == set(channels)
        json.dumps(dict(p.zattrs))
    generate_normalization_metadata(path, num_workers=1, channel_ids=1, grid_spacing=4)  # single int


def test_rerun_merges_with_existing_metadata(plate):
    path, arrays = plate
    with open_ome_zarr(path, mode="r+") as p:
        for _, position in p.positions():
            old = {"GFP": {"custom": {"mean": 1.0}}, "Other": {"fov_statistics": {"x": 1.0}}}
            position.zattrs["normalization"] = old
        p.zattrs["other_key"] = 5
    generate_normalization_metadata(path, num_workers=2, channel_ids=[1], grid_spacing=8)
    with open_ome_zarr(path, mode="r") as p:
        assert p.zattrs["other_key"] == 5
        for name, position in p.positions():
            meta = position.zattrs["normalization"]
            assert meta["Other"] == {"fov_statistics": {"x": 1.0}}
            assert meta["GFP"]["custom"] == {"mean": 1.0}
            assert meta["GFP"]["fov_statistics"] == compute_statistics(arrays[name][:, 1, :, ::8, ::8])


def test_failure_while_computing_leaves_attributes_untouched(plate, monkeypatch):
    path, _ = plate
    generate_normalization_metadata(path, num_workers=1, channel_ids=[0], grid_spacing=8)
    with open_ome_zarr(path, mode="r") as p:
        before = {name: dict(pos.zattrs) for name, pos in p.positions()}
        before_plate = dict(p.zattrs)
    calls = {"n": 0}
    real = meta_utils.compute_statistics

    def flaky(values):
        calls["n"] += 1
        # 8 FOV-level calls (4 FOVs x 2 channels), then 4 per channel (dataset + 3 timepoints):
        # call 13 fails after channel 0 is complete, in the middle of channel 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return real(values)

    monkeypatch.setattr(meta_utils, "compute_statistics", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_normalization_metadata(path, num_workers=2, channel_ids=[0, 1], grid_spacing=2)
    assert calls["n"] == 13
    with open_ome_zarr(path, mode="r") as p:
        assert {name: dict(pos.zattrs) for name, pos in p.positions()} == before
        assert dict(p.zattrs) == before_plate
        assert "GFP" not in p.zattrs["normalization"]


def test_unequal_fov_shapes_are_supported(tmp_path, write_plate):
    path = tmp_path / "plate.zarr"
    a = write_plate(path, fovs=[("A", "1", "0")], shape=(2, 1, 16, 16))
    with open_ome_zarr(path, mode="r+") as p:
        b = np.random.default_rng(1).normal(size=(2, 3, 1, 20, 24)).astype(np.float32)
        p.create_position("A", "1", "1").create_image("0", b)
    generate_normalization_metadata(path, num_workers=1, channel_ids=[0], grid_spacing=3)
    with open_ome_zarr(path, mode="r") as p:
        got = p.zattrs["normalization"]["Phase3D"]["dataset_statistics"]
    pixels = np.concatenate([a["A/1/0"][:, 0, :, ::3, ::3].ravel(), b[:, 0, :, ::3, ::3].ravel()])
    assert got == compute_statistics(pixels)


def test_bad_arguments(plate):
    path, _ = plate
    with pytest.raises(ValueError, match="channel index \\[5\\] out of range"):
        generate_normalization_metadata(path, channel_ids=[5])
    with pytest.raises(ValueError, match="grid_spacing"):
        generate_normalization_metadata(path, grid_spacing=0)


def test_write_meta_field_merges(plate):
    path, _ = plate
    with open_ome_zarr(path, mode="r+") as p:
        position = p["A/1/0"]
        write_meta_field(position, {"a": 1.0}, "normalization", "GFP")
        write_meta_field(position, {"b": 2.0, "a": 3.0}, "normalization", "GFP")
        write_meta_field(position, {"c": 4.0}, "normalization", "Phase3D")
        write_meta_field(p, {"d": 5.0}, "normalization", "GFP")  # plates too
    with open_ome_zarr(path, mode="r") as p:
        assert p["A/1/0"].zattrs["normalization"] == {"GFP": {"a": 3.0, "b": 2.0}, "Phase3D": {"c": 4.0}}
        assert p.zattrs["normalization"] == {"GFP": {"d": 5.0}}


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_preprocess_a_viscy_data_synthetic_plate(tmp_path, version):
    from viscy_data.norm_meta import read_norm_meta
    from viscy_data.synthetic import write_synthetic_plate

    synthetic = write_synthetic_plate(
        tmp_path / "synthetic.zarr", n_timepoints=3, z_size=2, yx_size=(32, 32), write_norm_meta=False, version=version
    )
    generate_normalization_metadata(synthetic.store_path, num_workers=2, grid_spacing=4)
    with open_ome_zarr(synthetic.store_path, mode="r") as plate:
        for fov_name in synthetic.fov_names:
            position = plate[fov_name]
            pixels = np.asarray(position["0"][:, 1, :, ::4, ::4])
            norm = read_norm_meta(position.zattrs)
            assert set(norm) == set(synthetic.channel_names)
            gfp = synthetic.channel_names[1]
            assert position.zattrs["normalization"][gfp]["fov_statistics"] == compute_statistics(pixels)
            assert float(norm[gfp]["fov_statistics"]["p99"]) == pytest.approx(np.percentile(pixels, 99), rel=1e-6)
            assert set(norm[gfp]["timepoint_statistics"]) == {"0", "1", "2"}
