"""TIFF / OME-TIFF time-lapses -> HCS OME-Zarr positions, and the imported data through the loaders."""

import builtins
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from iohub.ngff import open_ome_zarr

from viscy_data.importers import ImportedImage, import_tiff, import_tracks, read_tiff_image
from viscy_data.importers import images as images_module


def _movie(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)


@pytest.fixture
def ome_tiff(tmp_path):
    data = _movie((5, 2, 3, 24, 32))
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(
        path,
        data,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.325,
            "PhysicalSizeY": 0.325,
            "PhysicalSizeZ": 2.0,
            "PhysicalSizeZUnit": "µm",
            "Channel": {"Name": ["Phase3D", "GFP"]},
        },
    )
    return path, data


def _read(plate_path, fov):
    with open_ome_zarr(plate_path, layout="hcs", mode="r") as plate:
        position = plate[fov]
        return position["0"][:], list(plate.channel_names), position.scale


def test_ome_tiff_keeps_data_channel_names_and_pixel_size(tmp_path, ome_tiff):
    path, data = ome_tiff
    info = read_tiff_image(path)
    assert info.axes == "TCZYX" and info.channel_names == ("Phase3D", "GFP")
    assert info.pixel_size == pytest.approx((2.0, 0.325, 0.325))
    result = import_tiff(path, tmp_path / "plate.zarr", "B/2/0", progress=False)
    assert result == ImportedImage(
        tmp_path / "plate.zarr", "B/2/0", (5, 2, 3, 24, 32), ("Phase3D", "GFP"), result.pixel_size
    )
    assert result.pixel_size == pytest.approx((2.0, 0.325, 0.325))
    stored, names, scale = _read(result.plate_path, "B/2/0")
    np.testing.assert_array_equal(stored, data)
    assert stored.dtype == np.uint16
    assert names == ["Phase3D", "GFP"]
    assert scale == pytest.approx([1.0, 1.0, 2.0, 0.325, 0.325])


def test_imagej_hyperstack_calibration_and_nm_units(tmp_path):
    data = _movie((4, 2, 16, 20))
    path = tmp_path / "hyperstack.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 650, 1 / 650), metadata={"axes": "TCYX", "unit": "nm"})
    result = import_tiff(path, tmp_path / "plate.zarr", progress=False)
    assert result.fov_name == "A/1/0"
    assert result.shape == (4, 2, 1, 16, 20)
    assert result.channel_names == ("ch0", "ch1")
    assert result.pixel_size[1:] == pytest.approx((0.65, 0.65))
    stored, _, _ = _read(result.plate_path, "A/1/0")
    np.testing.assert_array_equal(stored[:, :, 0], data)


def test_plain_tiff_needs_axes_and_warns_without_pixel_size(tmp_path, caplog):
    data = _movie((6, 16, 16))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(ValueError, match=r"cannot map the axes of .*stack.tif .* with axes=, e.g. axes='TYX'"):
        import_tiff(path, tmp_path / "plate.zarr", progress=False)
    assert not (tmp_path / "plate.zarr").exists()
    result = import_tiff(path, tmp_path / "plate.zarr", axes="tyx", channel_names=["nuclei"], progress=False)
    assert "does not say its pixel size" in caplog.text
    assert result.shape == (6, 1, 1, 16, 16) and result.pixel_size == (1.0, 1.0, 1.0)
    stored, names, _ = _read(result.plate_path, "A/1/0")
    np.testing.assert_array_equal(stored[:, 0, 0], data)
    assert names == ["nuclei"]
    # Z-major files: the axes say where each dimension goes
    result = import_tiff(path, tmp_path / "z.zarr", axes="ZYX", pixel_size=(1.5, 0.5, 0.5), progress=False)
    assert result.shape == (1, 1, 6, 16, 16) and result.pixel_size == (1.5, 0.5, 0.5)


def test_second_fov_overwrite_and_channel_checks(tmp_path, ome_tiff):
    path, data = ome_tiff
    plate = tmp_path / "plate.zarr"
    import_tiff(path, plate, "A/1/0", progress=False)
    import_tiff(path, plate, "A/2/0", pixel_size=0.5, progress=False)
    with open_ome_zarr(plate, layout="hcs", mode="r") as opened:
        assert sorted(name for name, _ in opened.positions()) == ["A/1/0", "A/2/0"]
        assert opened["A/2/0"].scale[-2:] == [0.5, 0.5]
    with pytest.raises(FileExistsError, match="already has position A/1/0; pass overwrite=True"):
        import_tiff(path, plate, "A/1/0", progress=False)
    other = tmp_path / "other.ome.tif"
    tifffile.imwrite(other, data[:2] + 1, metadata={"axes": "TCZYX", "Channel": {"Name": ["Phase3D", "GFP"]}})
    import_tiff(other, plate, "A/1/0", overwrite=True, progress=False)
    stored, _, _ = _read(plate, "A/1/0")
    np.testing.assert_array_equal(stored, data[:2] + 1)
    with pytest.raises(ValueError, match=r"has channels \['Phase3D', 'GFP'\], the image would add \['a', 'b'\]"):
        import_tiff(path, plate, "B/1/0", channel_names=["a", "b"], progress=False)
    with pytest.raises(ValueError, match=r"channel_names name 3 channel\(s\)"):
        import_tiff(path, tmp_path / "new.zarr", channel_names=["a", "b", "c"], progress=False)
    with pytest.raises(ValueError, match="FOV name must look like"):
        import_tiff(path, tmp_path / "new.zarr", "A1", progress=False)
    assert not (tmp_path / "new.zarr").exists()


def test_failed_import_leaves_no_new_plate(tmp_path, ome_tiff, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(images_module, "_copy_frames", broken)
    with pytest.raises(OSError, match="disk full"):
        import_tiff(ome_tiff[0], tmp_path / "plate.zarr", progress=False)
    assert not (tmp_path / "plate.zarr").exists()


def test_missing_tifffile_names_the_extra(tmp_path, ome_tiff, monkeypatch):
    real_import = builtins.__import__

    def no_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError("No module named 'tifffile'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tifffile")
    monkeypatch.setattr(builtins, "__import__", no_tifffile)
    with pytest.raises(ImportError, match=r"pip install 'viscy-data\[tiff\]'"):
        import_tiff(ome_tiff[0], tmp_path / "plate.zarr")


def test_imported_plate_and_tracks_feed_the_triplet_loader(tmp_path, ome_tiff):
    """End to end: TIFF + tracks table -> plate + tracks CSV -> TripletDataset patches centred on the cells."""
    from viscy_data.triplet import TripletDataModule

    path, _ = ome_tiff
    movie = np.zeros((5, 2, 3, 24, 32), dtype=np.uint16)
    movie[:, 1, :, 10:13, 14:17] = 1000  # a bright cell at (11, 15) in every frame
    tifffile.imwrite(path, movie, metadata={"axes": "TCZYX", "Channel": {"Name": ["Phase3D", "GFP"]}})
    plate = tmp_path / "plate.zarr"
    import_tiff(path, plate, "A/1/0", progress=False)
    table = tmp_path / "cells.csv"
    pd.DataFrame({"track_id": [1] * 5, "t": range(5), "y": [11.0] * 5, "x": [15.0] * 5}).to_csv(table, index=False)
    import_tracks(table, tmp_path / "tracks", "A/1/0", image_shape=(3, 24, 32))
    dm = TripletDataModule(
        data_path=str(plate),
        tracks_path=str(tmp_path / "tracks"),
        source_channel=["GFP"],
        z_range=(0, 3),
        initial_yx_patch_size=(8, 8),
        final_yx_patch_size=(8, 8),
        batch_size=5,
        num_workers=0,
        predict_cells=False,
    )
    dm.setup("predict")
    batch = dm.predict_dataset.__getitems__(list(range(5)))
    assert batch["anchor"].shape == (5, 1, 3, 8, 8)
    # the cell (3 x 3 bright pixels) sits at the patch centre in every frame
    centre = batch["anchor"][:, 0, 1, 3:6, 3:6]
    assert float(centre.min()) == 1000 and float(batch["anchor"].sum()) == 5 * 3 * 9 * 1000
