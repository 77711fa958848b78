"""Tiny networks, loggers and batches shared by the dynaclr engine tests.

Also makes ``_mx_testdata`` (multi-experiment plates and tracks written on the fly) importable by the test
modules of this folder, which is not a package: pytest imports this file before them.
"""

import importlib.util
import pathlib
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers.logger import Logger
from torch import nn


def _register_testdata() -> None:
    spec = importlib.util.spec_from_file_location("_mx_testdata", pathlib.Path(__file__).with_name("_mx_testdata.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["_mx_testdata"] = module
    spec.loader.exec_module(module)


if "_mx_testdata" not in sys.modules:
    _register_testdata()


class TinyEncoder(nn.Module):
    """(B, C, Z, Y, X) -> (features (B, F), projections (B, P)), like ContrastiveEncoder."""

    def __init__(self, in_channels: int = 2, features: int = 8, projection: int = 4):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, features, kernel_size=1)
        self.projection = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, projection))

    def forward(self, x):
        features = self.stem(x).mean(dim=(2, 3, 4))
        return features, self.projection(features)


class TinyVae(nn.Module):
    """A deterministic-size VAE returning SimpleNamespace(recon_x, mean, logvar, z)."""

    def __init__(self, shape=(1, 2, 4, 4), latent_dim: int = 6, spatial_dims: int | None = None):
        super().__init__()
        self.shape = tuple(shape)
        n = int(torch.tensor(self.shape).prod())
        self.latent_dim = latent_dim
        if spatial_dims is not None:
            self.spatial_dims = spatial_dims
        self.encoder = nn.Linear(n, 2 * latent_dim)
        self.decoder_net = nn.Linear(latent_dim, n)

    def decoder(self, z):
        return self.decoder_net(z).view(z.shape[0], *self.shape)

    def forward(self, x):
        stats = self.encoder(x.flatten(1))
        mean, logvar = stats.chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        return SimpleNamespace(recon_x=self.decoder(z), mean=mean, logvar=logvar, z=z)


class RecordingExperiment:
    """Stands in for a TensorBoard SummaryWriter and records every call."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if not name.startswith("add_"):
            raise AttributeError(name)

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))

        return record

    def tags(self, method):
        return [kwargs["tag"] if "tag" in kwargs else args[0] for name, args, kwargs in self.calls if name == method]


class RecordingLogger(Logger):
    """Lightning logger keeping metrics in memory and exposing a RecordingExperiment."""

    def __init__(self):
        super().__init__()
        self._experiment = RecordingExperiment()
        self.metrics = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    @property
    def experiment(self):
        return self._experiment

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append(dict(metrics))

    def keys(self):
        return set().union(*self.metrics) if self.metrics else set()


@pytest.fixture
def tiny_encoder():
    torch.manual_seed(0)
    return TinyEncoder()


def make_triplets(n: int = 16, channels: int = 2, shape=(2, 6, 6), seed: int = 0, negative: bool = True):
    """Dataset of triplet dict samples whose positive is a noisy copy of the anchor."""
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(n, channels, *shape, generator=g)
    positive = anchor + 0.1 * torch.randn(anchor.shape, generator=g)
    samples = []
    for i in range(n):
        sample = {
            "anchor": anchor[i],
            "positive": positive[i],
            "index": {"fov_name": "A/1/0", "id": i},
        }
        if negative:
            sample["negative"] = anchor[(i + 1) % n]
        samples.append(sample)
    return samples


def triplet_loader(n: int = 16, batch_size: int = 4, **kwargs):
    return torch.utils.data.DataLoader(make_triplets(n, **kwargs), batch_size=batch_size, shuffle=False)


@pytest.fixture
def recording_logger():
    return RecordingLogger()


@pytest.fixture
def encoder_cls():
    return TinyEncoder


@pytest.fixture
def vae_cls():
    return TinyVae


@pytest.fixture
def triplets():
    """Factory ``triplets(n, batch_size, **kwargs) -> DataLoader`` of triplet dict batches."""
    return triplet_loader
