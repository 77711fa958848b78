"""Tiny Lightning module and data module, importable by class path in CLI tests."""

import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from torch.utils.data import DataLoader, IterableDataset, TensorDataset


class ToyModule(LightningModule):
    """A 3-D convolution on (B, 1, 2, 8, 8) images, or an embedding model with two outputs."""

    def __init__(self, hidden: int = 2, lr: float = 0.01, two_outputs: bool = False, momentum: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.conv = torch.nn.Conv3d(1, hidden, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.head = torch.nn.Linear(hidden, 3)
        self.example_input_array = torch.zeros(2, 1, 2, 8, 8)

    def forward(self, x):
        y = self.conv(x)
        if self.hparams.two_outputs:
            features = y.mean(dim=(2, 3, 4))
            return features, self.head(features)
        return y

    def _loss(self, batch):
        (x,) = batch
        return self.conv(x).pow(2).mean()

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch, batch_idx):
        (x,) = batch
        features = self.conv(x).mean(dim=(2, 3, 4))
        n = x.shape[0]
        index = {
            "fov_name": [f"/A/1/{batch_idx}"] * n,
            "track_id": torch.arange(n) + 10 * batch_idx,
            "t": torch.full((n,), batch_idx),
            "id": torch.arange(n) + 100 * batch_idx,
        }
        return {"features": features, "projections": self.head(features), "index": index}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)


class _SlowDataset(TensorDataset):
    """A TensorDataset whose items take ``delay`` seconds each (a slow file system)."""

    def __init__(self, data, delay: float):
        super().__init__(data)
        self.delay = delay

    def __getitem__(self, index):
        time.sleep(self.delay)
        return super().__getitem__(index)


class _Items(IterableDataset):
    """An iterable (length-less) dataset of the given items."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return ((item,) for item in self.data)


class ToyDataModule(LightningDataModule):
    """Random (1, 2, 8, 8) images.

    ``item_delay`` slows every item down (for tests that interrupt a run); ``iterable`` serves them
    from a length-less dataset (Lightning then cannot know an epoch is empty before running it).
    """

    def __init__(self, num_samples: int = 8, batch_size: int = 4, item_delay: float = 0.0, iterable: bool = False):
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.item_delay = item_delay
        self.iterable = iterable

    def _loader(self):
        generator = torch.Generator().manual_seed(0)
        data = torch.rand(self.num_samples, 1, 2, 8, 8, generator=generator)
        dataset = _Items(data) if self.iterable else _SlowDataset(data, self.item_delay)
        return DataLoader(dataset, batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()

    def predict_dataloader(self):
        return self._loader()


class TouchAfterBatches(Callback):
    """Create ``path`` once ``batches`` training or prediction batches have run (tests wait for it)."""

    def __init__(self, path: str, batches: int = 1):
        self.path = Path(path)
        self.batches = batches
        self.seen = 0

    def _count(self):
        self.seen += 1
        if self.seen == self.batches:
            self.path.touch()

    def on_train_batch_end(self, *args, **kwargs):
        self._count()

    def on_predict_batch_end(self, *args, **kwargs):
        self._count()


class SlowSteps(Callback):
    """Sleep ``seconds`` after every training batch, so a signal reliably lands in the middle of a run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs):
        time.sleep(self.seconds)


class RecordTrainStart(Callback):
    """Save the global step, epoch and optimizer state at the start of training to ``path`` (torch.save)."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        state = {
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "optimizer": trainer.optimizers[0].state_dict(),
        }
        torch.save(state, self.path)


def toy_config(
    run_dir: Path,
    *,
    data: dict | None = None,
    model: dict | None = None,
    trainer: dict | None = None,
    callbacks: list | tuple = (),
    version: str | None = "run",
    checkpoint_dir: str | None = "ckpt",
    name: str = "config.yml",
) -> str:
    """Write a fit config of ToyModule/ToyDataModule logging to ``run_dir`` and return its path.

    The logger is a CSVLogger with a fixed ``version`` (as the shipped configs have), checkpoints go to
    ``run_dir/<checkpoint_dir>`` with ``last.ckpt`` (``checkpoint_dir=None``: ModelCheckpoint's default,
    ``checkpoints`` in the logger's folder).
    """
    dirpath = None if checkpoint_dir is None else str(Path(run_dir) / checkpoint_dir)
    config = {
        "model": {"class_path": "vu_toys.ToyModule", "init_args": {"hidden": 3, **(model or {})}},
        "data": {
            "class_path": "vu_toys.ToyDataModule",
            "init_args": {"num_samples": 8, "batch_size": 4, **(data or {})},
        },
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "logs", "version": version},
            },
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": dirpath, "save_last": True},
                },
                *callbacks,
            ],
            **(trainer or {}),
        },
    }
    path = Path(run_dir) / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


class CheckedDataModule(ToyDataModule):
    """ToyDataModule with a pre-flight check that records its calls and fails when ``fail`` is set."""

    calls: list = []

    def __init__(self, num_samples: int = 8, batch_size: int = 4, fail: bool = False):
        super().__init__(num_samples, batch_size)
        self.fail = fail

    def preflight_check(self, stage: str, world_size: int = 1) -> None:
        CheckedDataModule.calls.append((stage, world_size))
        if self.fail:
            from viscy_data.checks import DataCheckError

            raise DataCheckError(["batch_size is wrong", "the data module's check failed"], "toy")
