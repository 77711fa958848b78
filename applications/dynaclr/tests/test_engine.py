import math

import pytest
import torch
from lightning.pytorch import Trainer
from pytorch_metric_learning.losses import NTXentLoss
from torch import nn

from dynaclr.engine import ContrastiveModule, ntxent_negative_metrics


def trainer(logger=False, **kwargs):
    defaults = dict(
        accelerator="cpu",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return Trainer(**{**defaults, **kwargs})


def test_stores_arguments_and_encoder_as_model(tiny_encoder):
    module = ContrastiveModule(tiny_encoder, lr=0.01, example_input_array_shape=(3, 2, 2, 6, 6))
    assert module.model is tiny_encoder
    assert module.lr == 0.01
    assert module.schedule == "Constant"
    assert isinstance(module.loss_function, nn.TripletMarginLoss)
    assert module.loss_function.margin == 0.5
    assert module.example_input_array.shape == (3, 2, 2, 6, 6)
    features, projections = module(module.example_input_array)
    assert features.shape == (3, 8) and projections.shape == (3, 4)
    assert all(k.startswith("model.") for k in module.state_dict())


def test_default_loss_is_not_shared(encoder_cls):
    assert ContrastiveModule(encoder_cls()).loss_function is not ContrastiveModule(encoder_cls()).loss_function


def test_invalid_arguments_name_the_culprit(tiny_encoder):
    with pytest.raises(ValueError, match="schedule"):
        ContrastiveModule(tiny_encoder, schedule="Cosine")
    with pytest.raises(ValueError, match="log_negative_metrics_every_n_epochs"):
        ContrastiveModule(tiny_encoder, log_negative_metrics_every_n_epochs=0)


def test_ckpt_path_loads_state_dict_strictly(tmp_path, encoder_cls):
    source = ContrastiveModule(encoder_cls())
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(123)
    loaded = ContrastiveModule(encoder_cls(), ckpt_path=str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    torch.save({"state_dict": {"model.unexpected": torch.zeros(1)}}, path)
    with pytest.raises(RuntimeError, match="unexpected"):
        ContrastiveModule(encoder_cls(), ckpt_path=str(path))


def test_ntxent_path_uses_in_batch_negatives(tiny_encoder):
    module = ContrastiveModule(tiny_encoder, loss_function=NTXentLoss(temperature=0.5))
    batch = {"anchor": torch.randn(4, 2, 2, 6, 6), "positive": torch.randn(4, 2, 2, 6, 6)}
    loss = module.training_step(batch, 0)  # no "negative" key needed
    _, a = tiny_encoder(batch["anchor"])
    _, p = tiny_encoder(batch["positive"])
    labels = torch.arange(4).repeat(2)
    torch.testing.assert_close(loss, NTXentLoss(temperature=0.5)(torch.cat([a, p]), labels))


def test_triplet_loss_uses_negative_and_names_missing_key(tiny_encoder):
    module = ContrastiveModule(tiny_encoder)
    batch = {k: torch.randn(3, 2, 2, 6, 6) for k in ("anchor", "positive", "negative")}
    loss = module.training_step(batch, 0)
    projections = [tiny_encoder(batch[k])[1] for k in ("anchor", "positive", "negative")]
    torch.testing.assert_close(loss, nn.TripletMarginLoss(margin=0.5)(*projections))
    del batch["negative"]
    with pytest.raises(KeyError, match="negative"):
        module.training_step(batch, 0)


class _ViewsEncoder(nn.Module):
    """Records how it was called; ``forward_views`` optional."""

    def __init__(self, with_views: bool):
        super().__init__()
        self.head = nn.Linear(2, 3)
        self.calls = []
        if with_views:
            self.forward_views = self._forward_views

    def forward(self, x):
        self.calls.append(("forward", x.shape[0]))
        features = x.mean(dim=(2, 3, 4))
        return features, self.head(features)

    def _forward_views(self, views):
        self.calls.append(("views", [v.shape[0] for v in views]))
        features = [v.mean(dim=(2, 3, 4)) for v in views]
        return [(f, self.head(f)) for f in features]


@pytest.mark.parametrize("with_views", [True, False])
@pytest.mark.parametrize("loss", ["ntxent", "triplet"])
def test_views_go_through_forward_views_when_the_encoder_has_it(with_views, loss):
    torch.manual_seed(0)
    encoder = _ViewsEncoder(with_views)
    module = ContrastiveModule(encoder, loss_function=NTXentLoss(temperature=0.5) if loss == "ntxent" else None)
    keys = ("anchor", "positive") if loss == "ntxent" else ("anchor", "positive", "negative")
    batch = {k: torch.randn(4, 2, 2, 6, 6) for k in keys}
    value = module.training_step(batch, 0)
    expected_calls = [("views", [4] * len(keys))] if with_views else [("forward", 4)] * len(keys)
    assert encoder.calls == expected_calls
    projections = [encoder.head(batch[k].mean(dim=(2, 3, 4))) for k in keys]
    if loss == "ntxent":
        expected = NTXentLoss(temperature=0.5)(torch.cat(projections), torch.arange(4).repeat(2))
    else:
        expected = nn.TripletMarginLoss(margin=0.5)(*projections)
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("seed", range(5))
def test_ntxent_negative_metrics_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    batch = 2 + seed
    anchor, positive = torch.randn(batch, 5, generator=g), torch.randn(batch, 5, generator=g)
    embeddings = torch.cat([anchor, positive])
    cos_neg, dist_neg, cos_rows, dist_rows = [], [], [], []
    for i in range(batch):
        row_c, row_d = [], []
        for j in range(2 * batch):
            if j in (i, i + batch):
                continue
            row_c.append(torch.cosine_similarity(anchor[i], embeddings[j], dim=0))
            row_d.append(torch.dist(anchor[i], embeddings[j]))
        cos_neg += row_c
        dist_neg += row_d
        cos_rows.append(sum(row_c))
        dist_rows.append(sum(row_d))
    metrics = ntxent_negative_metrics(anchor, positive)
    pos_cos = torch.cosine_similarity(anchor, positive).mean()
    pos_dist = (anchor - positive).norm(dim=1).mean()
    expected = {
        "metrics/cosine_similarity/negative_mean": torch.stack(cos_neg).mean(),
        "metrics/cosine_similarity/negative_sum": torch.stack(cos_rows).mean(),
        "metrics/margin_positive/negative": pos_cos - torch.stack(cos_neg).mean(),
        "metrics/euclidean_distance/negative_mean": torch.stack(dist_neg).mean(),
        "metrics/euclidean_distance/negative_sum": torch.stack(dist_rows).mean(),
        "metrics/margin_euclidean_positive/negative": torch.stack(dist_neg).mean() - pos_dist,
    }
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(metrics[key], value, rtol=1e-5, atol=1e-5, msg=key)


def test_predict_step_passes_index_through(tiny_encoder):
    module = ContrastiveModule(tiny_encoder)
    index = {"fov_name": ["A/1/0", "B/2/1"], "id": torch.tensor([4, 7])}
    out = module.predict_step({"anchor": torch.randn(2, 2, 2, 6, 6), "index": index}, 0)
    assert out["index"] is index
    assert out["features"].shape == (2, 8) and out["projections"].shape == (2, 4)


def test_fit_logs_spec_keys_and_images(triplets, tiny_encoder, recording_logger):
    module = ContrastiveModule(
        tiny_encoder, loss_function=NTXentLoss(), log_batches_per_epoch=2, log_samples_per_batch=2
    )
    trainer(recording_logger, max_epochs=1, log_every_n_steps=1).fit(module, triplets(8, 4), triplets(8, 4))
    keys = recording_logger.keys()
    for key in (
        "loss/train_step",
        "loss/train_epoch",
        "loss/val",
        "metrics/cosine_similarity/positive/train",
        "metrics/euclidean_distance/positive/val",
        "metrics/cosine_similarity/negative_mean/train",
        "metrics/margin_euclidean_positive/negative/val",
    ):
        assert key in keys, key
    assert recording_logger.experiment.tags("add_image") == ["val_samples", "train_samples"]
    assert module.training_step_outputs == [] and module.validation_step_outputs == []


def test_fit_with_explicit_negative_logs_negative_metrics(triplets, tiny_encoder, recording_logger):
    module = ContrastiveModule(tiny_encoder, log_batches_per_epoch=0)
    trainer(recording_logger, max_epochs=1, log_every_n_steps=1).fit(module, triplets(8, 4), triplets(8, 4))
    assert {"metrics/cosine_similarity_negative/train", "metrics/euclidean_distance_negative/val"} <= (
        recording_logger.keys()
    )
    assert recording_logger.experiment.tags("add_image") == []


def test_fit_without_logger_or_image_capable_logger(triplets, tiny_encoder, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    module = ContrastiveModule(tiny_encoder, loss_function=NTXentLoss())
    trainer(False, max_epochs=1).fit(module, triplets(8, 4), triplets(8, 4))
    trainer(CSVLogger(tmp_path), max_epochs=1).fit(module, triplets(8, 4))
    assert module.training_step_outputs == []


def test_loss_decreases_on_fixed_data(triplets, tiny_encoder):
    torch.manual_seed(0)
    module = ContrastiveModule(tiny_encoder, loss_function=NTXentLoss(temperature=0.5), lr=0.05)
    loader = triplets(16, 8, negative=False)
    batch = next(iter(loader))

    def loss():
        with torch.no_grad():
            return module.ntxent_loss(module(batch["anchor"])[1], module(batch["positive"])[1]).item()

    before = loss()
    trainer(False, max_epochs=15).fit(module, loader)
    after = loss()
    assert math.isfinite(after) and after < 0.8 * before


def test_warmup_cosine_schedule(triplets, tiny_encoder):
    module = ContrastiveModule(tiny_encoder, loss_function=NTXentLoss(), lr=0.1, schedule="WarmupCosine")
    lrs = []

    from lightning.pytorch.callbacks import Callback

    class LrRecorder(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(False, max_epochs=5, callbacks=[LrRecorder()]).fit(module, triplets(40, 4, negative=False))
    assert len(lrs) == 50
    warmup = 5
    assert lrs[0] == pytest.approx(0.1 / warmup)
    assert lrs[warmup - 1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[warmup - 1 :], lrs[warmup:]))
    assert lrs[-1] < 0.01


def test_log_embeddings_draws_umap(triplets, tiny_encoder, recording_logger, monkeypatch):
    import sys
    import types

    fitted = []

    class FakeUMAP:  # the real one JIT-compiles for ~30 s; the wiring is what is tested here
        def __init__(self, n_components, n_neighbors, random_state):
            assert n_components == 2 and n_neighbors <= 15

        def fit_transform(self, x):
            fitted.append(x.shape)
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    module = ContrastiveModule(tiny_encoder, loss_function=NTXentLoss(), log_embeddings=True, log_batches_per_epoch=0)
    trainer(recording_logger, max_epochs=1).fit(module, triplets(8, 4), triplets(24, 8))
    assert recording_logger.experiment.tags("add_embedding") == ["val_features_umap"]
    assert fitted == [(24, 8)]  # every validation cell's backbone features
