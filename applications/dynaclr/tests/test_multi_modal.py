import pytest
import torch
from lightning.pytorch import Trainer
from pytorch_metric_learning.losses import NTXentLoss
from torch import nn

from dynaclr.multi_modal import JointContrastiveModule, JointEncoders, MultiModalContrastiveModule


@pytest.fixture
def joint(encoder_cls):
    torch.manual_seed(0)
    return JointEncoders(encoder_cls(in_channels=1), encoder_cls(in_channels=1, features=6))


def test_joint_encoders_route_each_modality(joint):
    source, target = torch.randn(3, 1, 2, 5, 5), torch.randn(3, 1, 2, 5, 5)
    (sf, sp), (tf, tp) = joint(source, target)
    torch.testing.assert_close(sf, joint.source_encoder(source)[0])
    torch.testing.assert_close(tp, joint.target_encoder(target)[1])
    assert [t.shape[1] for t in joint.forward_features(source, target)] == [8, 6]
    assert [t.shape[1] for t in joint.forward_projections(source, target)] == [4, 4]


def test_alias_and_defaults(joint):
    assert MultiModalContrastiveModule is JointContrastiveModule
    module = JointContrastiveModule(joint, example_input_array_shape=(2, 1, 2, 5, 5))
    assert isinstance(module.loss_function, NTXentLoss)
    assert module.prediction_arm == "source" and module.embedding_log_frequency == 10
    a, b = module.example_input_array
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 1, 2, 5, 5)
    assert [p.shape for p in module(a, b)] == [(2, 4), (2, 4)]
    with pytest.raises(TypeError, match="TripletMarginLoss"):
        JointContrastiveModule(joint, loss_function=nn.TripletMarginLoss())


def test_loss_is_symmetric_cross_modal_ntxent(joint):
    loss_fn = NTXentLoss(temperature=0.3)
    module = JointContrastiveModule(joint, loss_function=loss_fn)
    batch = {"anchor": torch.randn(4, 2, 2, 5, 5), "positive": torch.randn(4, 2, 2, 5, 5)}
    loss = module.training_step(batch, 0)
    labels = torch.arange(4).repeat(2)
    a_s = joint.source_encoder(batch["anchor"][:, :1])[1]
    a_t = joint.target_encoder(batch["anchor"][:, 1:2])[1]
    p_s = joint.source_encoder(batch["positive"][:, :1])[1]
    p_t = joint.target_encoder(batch["positive"][:, 1:2])[1]
    expected = loss_fn(torch.cat([a_s, a_t]), labels) + loss_fn(torch.cat([p_t, p_s]), labels)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(("arm", "channel"), [("source", 0), ("target", 1)])
def test_predict_uses_the_chosen_arm(joint, arm, channel):
    module = JointContrastiveModule(joint, prediction_arm=arm)
    module.on_predict_start()
    x = torch.randn(3, 2, 2, 5, 5)
    out = module.predict_step({"anchor": x, "index": {"id": [1, 2, 3]}}, 0)
    encoder = getattr(joint, f"{arm}_encoder")
    features, projections = encoder(x[:, channel : channel + 1])
    torch.testing.assert_close(out["features"], features)
    torch.testing.assert_close(out["projections"], projections)
    assert out["index"] == {"id": [1, 2, 3]}


def test_invalid_arm_is_rejected_at_predict(joint):
    module = JointContrastiveModule(joint, prediction_arm="both")
    with pytest.raises(ValueError, match="Invalid prediction arm"):
        module.on_predict_start()


def test_fit_runs(joint, triplets, recording_logger):
    module = JointContrastiveModule(joint, lr=0.01, log_batches_per_epoch=0)
    Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=recording_logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, triplets(8, 4, negative=False), triplets(8, 4, negative=False))
    assert {"loss/train_epoch", "loss/val", "metrics/cosine_similarity/negative_mean/val"} <= recording_logger.keys()


def test_embedding_log_frequency_sets_the_umap_epochs(joint):
    from unittest.mock import PropertyMock, patch

    module = JointContrastiveModule(joint, log_embeddings=True, embedding_log_frequency=3)
    drawn = []
    with patch.object(JointContrastiveModule, "current_epoch", new_callable=PropertyMock) as epoch:
        for e in range(7):
            epoch.return_value = e
            drawn.append(module._logs_embeddings())
    assert [e for e, on in enumerate(drawn) if on] == [0, 3, 6]
    assert not JointContrastiveModule(joint, log_embeddings=False)._logs_embeddings()
    with pytest.raises(ValueError, match="embedding_log_frequency"):
        JointContrastiveModule(joint, embedding_log_frequency=0)
