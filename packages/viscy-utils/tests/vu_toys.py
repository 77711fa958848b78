"""Tiny Lightning module and data module, importable by class path in CLI tests."""

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset


class ToyModule(LightningModule):
    """A 3-D convolution on (B, 1, 2, 8, 8) images, or an embedding model with two outputs."""

    def __init__(self, hidden: int = 2, lr: float = 0.01, two_outputs: bool = False):
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
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyDataModule(LightningDataModule):
    """Random (1, 2, 8, 8) images."""

    def __init__(self, num_samples: int = 8, batch_size: int = 4):
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size

    def _loader(self):
        generator = torch.Generator().manual_seed(0)
        data = torch.rand(self.num_samples, 1, 2, 8, 8, generator=generator)
        return DataLoader(TensorDataset(data), batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()

    def predict_dataloader(self):
        return self._loader()


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
