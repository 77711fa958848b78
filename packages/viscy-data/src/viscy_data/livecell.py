"""LIVECell: single-channel phase-contrast TIFFs with COCO instance annotations (extra ``[livecell]``)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data.gpu_transform import TransformListsDataModule
from viscy_data.volumes import VolumeCacheFactory

try:
    from pycocotools.coco import COCO
except ImportError:  # optional extra
    COCO = None
try:
    import tifffile
except ImportError:  # optional extra
    tifffile = None
try:
    from torchvision.ops import box_convert
except ImportError:  # optional extra
    box_convert = None

__all__ = ["LiveCellDataModule", "LiveCellDataset", "LiveCellTestDataset"]


def _require_livecell(user: str) -> None:
    missing = [
        name
        for name, module in (("pycocotools", COCO), ("tifffile", tifffile), ("torchvision", box_convert))
        if module is None
    ]
    if missing:
        raise ImportError(f"{', '.join(missing)} required for {user}. Install with: pip install 'viscy-data[livecell]'")


def _read_tiff(path: Path) -> Tensor:
    """Read a single-page, single-channel TIFF as a float32 ``(1, 1, Y, X)`` tensor."""
    image = np.asarray(tifffile.imread(path), dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"'{path}' should be a single-channel 2-D image, got shape {image.shape}")
    return torch.from_numpy(image)[None, None]


def _load_coco(annotations: Path) -> Any:
    # pycocotools prints progress to stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


class LiveCellDataset(Dataset):
    """Training/validation images, cached in memory after the first read.

    Parameters
    ----------
    images : sequence of path
        TIFF files.
    transform : callable
        Dictionary transform applied to ``{"source": (1, 1, Y, X) float32}``; may return a list.
    cache_map : MutableMapping
        Cache of decoded images keyed by path (a ``Manager().dict()`` to share it across workers).
    """

    def __init__(self, images: Sequence[str | Path], transform: Callable | None, cache_map: MutableMapping) -> None:
        _require_livecell("LiveCellDataset")
        super().__init__()
        self.images = [Path(p) for p in images]
        self.transform = transform
        self.cache_map = cache_map

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> list[dict[str, Tensor]]:
        """Return ``[{"source": (1, 1, Y, X)}]`` after the transform."""
        path = self.images[index]
        key = str(path)
        image = self.cache_map.get(key)
        if image is None:
            image = _read_tiff(path)
            self.cache_map[key] = image
        sample = {"source": image.clone()}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample if isinstance(sample, list) else [sample]


class LiveCellTestDataset(Dataset):
    """Test images of a COCO annotation file, optionally with their instance annotations.

    Parameters
    ----------
    image_dir : str or Path
        Directory holding the TIFFs named in the annotation file.
    transform : callable
        Dictionary transform applied to each sample (its return value is the sample).
    annotations : str or Path
        COCO JSON file.
    load_target : bool, default False
        Also return the image under ``"target"``.
    load_labels : bool, default False
        Add ``"detections"`` (``boxes`` (N, 4) xyxy float32, ``labels`` (N,) uint8 zeros,
        ``masks`` (N, Y, X) bool) and ``"file_name"``.
    """

    def __init__(
        self,
        image_dir: str | Path,
        transform: Callable | None,
        annotations: str | Path,
        load_target: bool = False,
        load_labels: bool = False,
    ) -> None:
        _require_livecell("LiveCellTestDataset")
        super().__init__()
        self.image_dir = Path(image_dir)
        self.transform = transform
        self.coco = _load_coco(Path(annotations))
        self.image_ids = sorted(self.coco.getImgIds())
        self.load_target = load_target
        self.load_labels = load_labels

    def __len__(self) -> int:
        return len(self.image_ids)

    def _detections(self, image_id: int, shape: tuple[int, int]) -> dict[str, Tensor]:
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        masks = np.zeros((len(annotations), *shape), dtype=bool)
        for i, annotation in enumerate(annotations):
            masks[i] = self.coco.annToMask(annotation).astype(bool)
        return {
            "boxes": box_convert(boxes, in_fmt="xywh", out_fmt="xyxy"),
            "labels": torch.zeros(len(annotations), dtype=torch.uint8),
            "masks": torch.from_numpy(masks),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return ``{"source", ["target"], ["detections", "file_name"]}`` after the transform."""
        info = self.coco.loadImgs(self.image_ids[index])[0]
        image = _read_tiff(self.image_dir / info["file_name"])
        sample: dict[str, Any] = {"source": image}
        if self.load_target:
            sample["target"] = image.clone()
        if self.load_labels:
            sample["detections"] = self._detections(info["id"], tuple(image.shape[-2:]))
            sample["file_name"] = info["file_name"]
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


def _collate_test(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep per-image detections and file names as lists (they differ in length)."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        out[key] = torch.stack(values) if isinstance(values[0], Tensor) else values
    return out


def _coco_file_names(annotations: Path) -> list[str]:
    with open(annotations) as f:
        images = json.load(f).get("images")
    if not images:
        raise ValueError(f"COCO file '{annotations}' lists no images")
    return sorted(image["file_name"] for image in images)


class LiveCellDataModule(TransformListsDataModule):
    """LIVECell training/validation (GPU augmentation) and test (with instance labels).

    Parameters
    ----------
    train_val_images : str or Path, optional
        Directory of training and validation TIFFs.
    test_images : str or Path, optional
        Directory of test TIFFs.
    train_annotations, val_annotations, test_annotations : str or Path, optional
        COCO JSON files; their ``images`` select the files of each split.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms, test_transforms : list
        Dictionary transforms (``None`` means none).
    batch_size : int, default 16
        Items per batch.
    num_workers : int, default 8
        DataLoader workers.
    pin_memory : bool, default True
        Pin batches.

    Raises
    ------
    NotADirectoryError, FileNotFoundError
        At construction, for a given image directory or annotation file that does not exist.
    """

    def __init__(
        self,
        train_val_images: str | Path | None = None,
        test_images: str | Path | None = None,
        train_annotations: str | Path | None = None,
        val_annotations: str | Path | None = None,
        test_annotations: str | Path | None = None,
        train_cpu_transforms: Sequence[Callable] | None = None,
        val_cpu_transforms: Sequence[Callable] | None = None,
        train_gpu_transforms: Sequence[Callable] | None = None,
        val_gpu_transforms: Sequence[Callable] | None = None,
        test_transforms: Sequence[Callable] | None = None,
        batch_size: int = 16,
        num_workers: int = 8,
        pin_memory: bool = True,
    ) -> None:
        _require_livecell("LiveCellDataModule")
        super().__init__(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.train_val_images = _existing_dir(train_val_images, "train_val_images")
        self.test_images = _existing_dir(test_images, "test_images")
        self.train_annotations = _existing_file(train_annotations, "train_annotations")
        self.val_annotations = _existing_file(val_annotations, "val_annotations")
        self.test_annotations = _existing_file(test_annotations, "test_annotations")
        self._test_transforms = list(test_transforms or [])
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = None
        self._caches = VolumeCacheFactory()

    def _split(self, annotations: Path | None, name: str, cache_map: MutableMapping, transform: Compose):
        if self.train_val_images is None or annotations is None:
            raise ValueError(f"the {name} set needs train_val_images and {name}_annotations")
        images = [self.train_val_images / file_name for file_name in _coco_file_names(annotations)]
        absent = [str(p) for p in images if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} image(s) listed in '{annotations}' are missing, e.g. {absent[0]}")
        return LiveCellDataset(images, transform, cache_map)

    def setup(self, stage: str) -> None:
        """Build the datasets of ``fit`` (train + val), ``validate`` (val) or ``test``; ``predict`` builds nothing."""
        if stage in ("fit", "validate"):
            # image paths are unique cache keys, so both splits can share one cache
            cache_map = self._caches.new(self.num_workers > 0)
            if stage == "fit":
                self.train_dataset = self._split(self.train_annotations, "train", cache_map, self.train_cpu_transforms)
            self.val_dataset = self._split(self.val_annotations, "val", cache_map, self.val_cpu_transforms)
        elif stage == "test":
            if self.test_images is None or self.test_annotations is None:
                raise ValueError("the test set needs test_images and test_annotations")
            self.test_dataset = LiveCellTestDataset(
                self.test_images, Compose(self._test_transforms), self.test_annotations, load_labels=True
            )

    def test_dataloader(self) -> DataLoader:
        """Test loader; detections stay per-image lists so batches may hold any number of cells."""
        return DataLoader(
            self.test_dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=_collate_test,
        )

    def teardown(self, stage: str) -> None:
        """Stop the cache server process, if one was started."""
        self._caches.shutdown()


def _existing_dir(path: str | Path | None, argument: str) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_dir():
        raise NotADirectoryError(f"{argument}: '{path}' is not a directory")
    return path


def _existing_file(path: str | Path | None, argument: str) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argument}: '{path}' does not exist")
    return path
