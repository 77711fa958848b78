import math
from unittest.mock import PropertyMock, patch

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from dynaclr.engine import BetaVaeModule
from dynaclr.vae_logging import BetaVaeLogger


def at_epoch(module, epoch):
    with patch.object(BetaVaeModule, "current_epoch", new_callable=PropertyMock, return_value=epoch):
        return module.get_current_beta()


def test_beta_schedules(vae_cls):
    w, b, b0 = 10, 4.0, 0.5
    constant = BetaVaeModule(vae_cls(), beta=b)
    assert at_epoch(constant, 0) == at_epoch(constant, 99) == b
    linear = BetaVaeModule(vae_cls(), beta=b, beta_schedule="linear", beta_min=b0, beta_warmup_epochs=w)
    assert at_epoch(linear, 0) == pytest.approx(b0)
    assert at_epoch(linear, 5) == pytest.approx(b0 + (b - b0) * 0.5)
    assert at_epoch(linear, 10) == at_epoch(linear, 50) == b
    cosine = BetaVaeModule(vae_cls(), beta=b, beta_schedule="cosine", beta_min=b0, beta_warmup_epochs=w)
    assert at_epoch(cosine, 0) == pytest.approx(b0)
    assert at_epoch(cosine, 5) == pytest.approx(b0 + (b - b0) * 0.5)
    values = [at_epoch(cosine, e) for e in range(12)]
    assert values == sorted(values) and values[-1] == b
    warmup = BetaVaeModule(vae_cls(), beta=b, beta_schedule="warmup", beta_min=b0, beta_warmup_epochs=w)
    assert at_epoch(warmup, 9) == b0 and at_epoch(warmup, 10) == b
    floored = BetaVaeModule(vae_cls(), beta=0.0)
    assert at_epoch(floored, 0) == 1e-15
    with pytest.raises(ValueError, match="beta_schedule"):
        BetaVaeModule(vae_cls(), beta_schedule="exp")


def test_forward_losses_match_definitions(vae_cls):
    torch.manual_seed(0)
    vae = vae_cls().eval()
    module = BetaVaeModule(vae, beta=2.0)
    x = torch.randn(3, 1, 2, 4, 4)
    out = module(x)
    ref = vae(x)
    torch.testing.assert_close(out["recon_loss"], ((ref.recon_x - x) ** 2).sum() / 3)
    kl = (-0.5 * (1 + ref.logvar - ref.mean**2 - ref.logvar.exp()).sum(1)).mean()
    torch.testing.assert_close(out["kl_loss"], kl)
    torch.testing.assert_close(out["total_loss"], out["recon_loss"] + 2.0 * kl)
    assert set(out) == {"recon_x", "z", "mu", "logvar", "recon_loss", "kl_loss", "total_loss"}
    mean_module = BetaVaeModule(vae, loss_function=nn.MSELoss())
    torch.testing.assert_close(mean_module(x)["recon_loss"], out["recon_loss"])


def test_kl_uses_clamped_logvar_consistently(vae_cls):
    vae = vae_cls().eval()
    with torch.no_grad():
        vae.encoder.bias[6:] = 60.0  # logvar far above the clamp
    out = BetaVaeModule(vae)(torch.zeros(2, 1, 2, 4, 4))
    assert math.isfinite(out["kl_loss"].item())


def test_2d_vae_squeezes_singleton_z(vae_cls):
    vae = vae_cls(shape=(1, 4, 4), spatial_dims=2).eval()
    module = BetaVaeModule(vae)
    out = module(torch.randn(2, 1, 1, 4, 4))
    assert out["recon_x"].shape == (2, 1, 1, 4, 4)


def test_shape_mismatch_is_reported(vae_cls):
    module = BetaVaeModule(vae_cls(shape=(1, 2, 4, 4)))
    with pytest.raises(ValueError, match="reconstructs shape"):
        module(torch.randn(4, 2, 1, 4, 4))  # same element count, different layout


def test_latent_dim_discovery(vae_cls, caplog):
    assert BetaVaeModule(vae_cls(latent_dim=5)).vae_logger.latent_dim == 5

    class Anonymous(nn.Module):
        def forward(self, x):
            raise NotImplementedError

    with caplog.at_level("WARNING"):
        assert BetaVaeModule(Anonymous()).vae_logger.latent_dim == 128
    assert "latent size" in caplog.text


def test_fit_logs_diagnostics_after_backward(vae_cls, recording_logger):
    pytest.importorskip("viscy_utils.log_images")
    torch.manual_seed(0)
    data = [{"anchor": torch.randn(1, 2, 4, 4), "index": {"fov_name": "A/1/0", "id": i}} for i in range(8)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    module = BetaVaeModule(vae_cls(), lr=1e-3, beta_schedule="linear", beta_warmup_epochs=2)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=recording_logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, loader, loader)
    keys = recording_logger.keys()
    for key in (
        "loss/train/total",
        "loss/val/kl",
        "beta/train",
        "diagnostics/encoder_grad_norm",
        "diagnostics/decoder_param_norm",
        "diagnostics/recon_has_nan",
        "latent_statistics/effective_dim/val",
        "latent_statistics/utilization/train",
    ):
        assert key in keys, key
    key = "diagnostics/encoder_grad_norm"
    grad_norms = [m[key] for m in recording_logger.metrics if key in m]
    assert grad_norms and all(g > 0 for g in grad_norms)
    betas = [m["beta/train"] for m in recording_logger.metrics if "beta/train" in m]
    assert betas[0] == pytest.approx(0.1) and betas[1] == pytest.approx(0.55)
    tags = recording_logger.experiment.tags("add_image")
    assert "train_reconstructions" in tags and "val_reconstructions" in tags
    assert "latent_distributions/dim_0_val" in recording_logger.experiment.tags("add_histogram")
    prediction = trainer.predict(module, loader)[0]
    assert prediction["latent"].shape == (4, 6) and prediction["reconstruction"].shape == (4, 1, 2, 4, 4)
    assert prediction["index"]["fov_name"] == ["A/1/0"] * 4


def test_latent_visualisations_draw_and_never_raise(vae_cls, recording_logger):
    module = BetaVaeModule(vae_cls())
    module._trainer = Trainer(logger=recording_logger, accelerator="cpu", enable_progress_bar=False)
    logger = module.vae_logger
    logger.latents["val"] = torch.randn(6, 6)
    logger.log_latent_traversal(module, n_dims=3, n_steps=5)
    logger.log_latent_interpolation(module, n_pairs=2, n_steps=4)
    logger.log_factor_traversal_matrix(module, n_dims=2, n_steps=3)
    calls = {args[0]: args[1] for name, args, _ in recording_logger.experiment.calls if name == "add_image"}
    assert set(calls) == {
        "latent_traversal/dim_0",
        "latent_traversal/dim_1",
        "latent_traversal/dim_2",
        "latent_interpolation/pair_0",
        "latent_interpolation/pair_1",
        "factor_traversal_matrix",
    }
    assert calls["latent_traversal/dim_0"].shape == (1, 4, 5 * 4)  # mid-Z of (1, 2, 4, 4) frames side by side
    assert calls["factor_traversal_matrix"].shape == (1, 2 * 4, 3 * 4)
    assert all(0 <= img.min() and img.max() <= 1 for img in calls.values())
    module.model.decoder = None  # broken decoder: logged, not raised
    logger.log_latent_traversal(module, n_dims=1)


def test_default_beta_schedule():
    logger = BetaVaeLogger()

    class Stub:
        logged = {}

        class trainer:  # noqa: N801
            max_epochs = 100

        def log(self, name, value, **kwargs):
            self.logged[name] = value

    stub = Stub()
    for epoch, expected in ((0, 0.1), (9, 0.1), (30, 0.1 + 3.9 * 0.5), (50, 4.0), (99, 4.0)):
        stub.current_epoch = epoch
        assert logger.log_beta_schedule(stub) == pytest.approx(expected)
    assert stub.logged["beta_schedule"] == 4.0
    assert logger.log_beta_schedule(stub, lambda e: e / 2) == pytest.approx(49.5)


@pytest.mark.parametrize(("batches", "samples", "rows"), [(2, 1, 2), (1, 3, 2), (8, 2, 4), (0, 2, 0)])
def test_reconstruction_grid_follows_the_logging_arguments(
    vae_cls, recording_logger, monkeypatch, batches, samples, rows
):
    """log_batches_per_epoch x log_samples_per_batch pairs (capped by the data) make the grid's rows."""
    import viscy_utils.log_images as log_images

    drawn = []
    monkeypatch.setattr(log_images, "render_images", lambda r, cmaps: drawn.append(len(r)) or np.zeros((2, 2, 3)))
    data = [{"anchor": torch.randn(1, 2, 4, 4), "index": {"fov_name": "A/1/0", "id": i}} for i in range(4)]
    loader = torch.utils.data.DataLoader(data, batch_size=2)  # two batches of two
    module = BetaVaeModule(vae_cls(), log_batches_per_epoch=batches, log_samples_per_batch=samples)
    quiet = dict.fromkeys(("enable_checkpointing", "enable_progress_bar", "enable_model_summary"), False)
    Trainer(accelerator="cpu", max_epochs=1, logger=recording_logger, limit_val_batches=0, **quiet).fit(module, loader)
    assert drawn == ([rows] if rows else [])
    assert recording_logger.experiment.tags("add_image") == (["train_reconstructions"] if rows else [])
