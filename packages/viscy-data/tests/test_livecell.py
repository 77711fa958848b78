import json

import numpy as np
import pytest
import tifffile
import torch

from viscy_data import livecell
from viscy_data.livecell import LiveCellDataModule, LiveCellDataset, LiveCellTestDataset

SHAPE = (12, 10)


def _write_split(image_dir, annotation_path, names, cells_per_image):
    """TIFFs with value = image ordinal, and a COCO file with square cells (bbox xywh + polygon)."""
    images, annotations = [], []
    for ordinal, (name, n_cells) in enumerate(zip(names, cells_per_image)):
        tifffile.imwrite(image_dir / name, np.full(SHAPE, ordinal + 1, dtype=np.uint16))
        images.append({"id": ordinal + 1, "file_name": name, "height": SHAPE[0], "width": SHAPE[1]})
        for k in range(n_cells):
            x, y, w, h = 1 + 2 * k, 2, 2, 3
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": ordinal + 1,
                    "category_id": 1,
                    "bbox": [x, y, w, h],
                    "segmentation": [polygon],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}
    annotation_path.write_text(json.dumps(coco))
    return annotation_path


@pytest.fixture
def livecell_dir(tmp_path):
    train_val = tmp_path / "images"
    test = tmp_path / "test_images"
    train_val.mkdir()
    test.mkdir()
    paths = {
        "train_val_images": train_val,
        "test_images": test,
        "train_annotations": _write_split(train_val, tmp_path / "train.json", ["b.tif", "a.tif", "c.tif"], [1, 1, 1]),
        "val_annotations": _write_split(train_val, tmp_path / "val.json", ["v0.tif", "v1.tif"], [0, 2]),
        "test_annotations": _write_split(test, tmp_path / "test.json", ["t0.tif", "t1.tif", "t2.tif"], [1, 3, 0]),
    }
    return paths


def _module(paths, **kwargs):
    return LiveCellDataModule(**paths, batch_size=2, num_workers=0, pin_memory=False, **kwargs)


def test_fit_loaders(livecell_dir):
    dm = _module(livecell_dir)
    dm.setup("fit")
    assert [p.name for p in dm.train_dataset.images] == ["a.tif", "b.tif", "c.tif"]
    assert [p.name for p in dm.val_dataset.images] == ["v0.tif", "v1.tif"]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"source"}
    assert batch["source"].shape == (2, 1, 1, *SHAPE) and batch["source"].dtype == torch.float32
    val = next(iter(dm.val_dataloader()))
    assert sorted(val["source"][:, 0, 0, 0, 0].tolist()) == [1.0, 2.0]


def test_dataset_caches_by_path(livecell_dir):
    cache = {}
    images = [livecell_dir["train_val_images"] / "a.tif"]
    dataset = LiveCellDataset(images, transform=None, cache_map=cache)
    (sample,) = dataset[0]
    sample["source"] += 5  # must not reach the cache
    assert list(cache) == [str(images[0])]
    assert (dataset[0][0]["source"] == 2).all()


def test_validate_stage_builds_val(livecell_dir):
    dm = _module(livecell_dir)
    dm.setup("validate")
    assert len(dm.val_dataset) == 2 and not hasattr(dm, "train_dataset")
    dm.setup("predict")  # no-op


def test_test_stage_variable_detections(livecell_dir):
    dm = _module(livecell_dir)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [len(b["file_name"]) for b in batches] == [2, 1]
    first = batches[0]
    assert first["source"].shape == (2, 1, 1, *SHAPE)
    assert first["file_name"] == ["t0.tif", "t1.tif"]
    counts = [len(d["boxes"]) for b in batches for d in b["detections"]]
    assert counts == [1, 3, 0]
    det = first["detections"][1]
    assert det["boxes"].dtype == torch.float32 and det["boxes"].shape == (3, 4)
    # xywh [3, 2, 2, 3] -> xyxy [3, 2, 5, 5]
    assert det["boxes"][1].tolist() == [3.0, 2.0, 5.0, 5.0]
    assert det["labels"].dtype == torch.uint8 and (det["labels"] == 0).all()
    assert det["masks"].dtype == torch.bool and det["masks"].shape == (3, *SHAPE)
    assert det["masks"][1, 3, 4] and not det["masks"][1, 0, 0]
    assert batches[1]["detections"][0]["masks"].shape == (0, *SHAPE)


def test_test_dataset_uses_transform_result(livecell_dir):
    dataset = LiveCellTestDataset(
        livecell_dir["test_images"],
        transform=lambda s: {"source": s["source"] * 2, "extra": 1},
        annotations=livecell_dir["test_annotations"],
        load_target=True,
    )
    sample = dataset[2]
    assert set(sample) == {"source", "extra"} and (sample["source"] == 6).all()
    plain = LiveCellTestDataset(livecell_dir["test_images"], None, livecell_dir["test_annotations"], load_target=True)
    assert torch.equal(plain[0]["source"], plain[0]["target"])


def test_paths_checked_at_construction(livecell_dir, tmp_path):
    with pytest.raises(NotADirectoryError, match="train_val_images"):
        LiveCellDataModule(train_val_images=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="val_annotations"):
        LiveCellDataModule(val_annotations=tmp_path / "nope.json")


def test_missing_image_named(livecell_dir):
    (livecell_dir["train_val_images"] / "c.tif").unlink()
    with pytest.raises(FileNotFoundError, match="c.tif"):
        _module(livecell_dir).setup("fit")


@pytest.mark.parametrize("hidden", [("COCO",), ("COCO", "tifffile")])
def test_missing_extra_is_named(livecell_dir, monkeypatch, hidden):
    for name in hidden:
        monkeypatch.setattr(livecell, name, None)
    expected = ", ".join({"COCO": "pycocotools", "tifffile": "tifffile"}[h] for h in hidden)
    with pytest.raises(ImportError, match=rf"{expected} required for LiveCellDataModule.*'viscy-data\[livecell\]'"):
        _module(livecell_dir)
    with pytest.raises(ImportError, match=r"LiveCellDataset. Install with: pip install 'viscy-data\[livecell\]'"):
        LiveCellDataset([], None, {})
