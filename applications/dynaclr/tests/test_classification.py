import pandas as pd
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from dynaclr.classification import ClassificationModule, ClassificationPredictionWriter


class Head(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Identity()

    def forward(self, x):
        return self.fc(x)


class Backbone(nn.Module):
    """timm-like backbone: stem-less body + head.fc, exposes num_features."""

    def __init__(self, width=12):
        super().__init__()
        self.num_features = width
        self.body = nn.Conv2d(2, width, 1)
        self.head = Head(width)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class Encoder(nn.Module):
    """ContrastiveEncoder-like: 3-D stem folding Z into channels, then a 2-D backbone."""

    def __init__(self, width=12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 1, 1), nn.Flatten(1, 2))
        self.encoder = Backbone(width)
        self.projection = nn.Linear(width, 4)


def test_structure_and_forward():
    torch.manual_seed(0)
    module = ClassificationModule(Encoder(width=12), lr=0.01, example_input_array_shape=(3, 1, 2, 8, 8))
    keys = module.state_dict().keys()
    assert all(k.startswith(("stem.", "backbone.", "loss.")) for k in keys)
    assert module.backbone.head.fc.weight.shape == (1, 12)  # width read from the backbone, not 768
    assert module(module.example_input_array).shape == (3, 1)
    assert isinstance(module.loss, nn.BCEWithLogitsLoss)


def test_backbone_without_classifier_is_rejected():
    encoder = Encoder()
    encoder.encoder = nn.Conv2d(2, 3, 1)
    with pytest.raises(TypeError, match="head.fc"):
        ClassificationModule(encoder, lr=None)


def test_fit_predict_and_csv_writer(tmp_path, recording_logger):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 2, 8, 8)
    y = (x.mean(dim=(1, 2, 3, 4)) > 0).float()
    fit_data = torch.utils.data.TensorDataset(x, y)
    predict_data = [(x[i], y[i], {"fov_name": f"A/1/{i % 2}", "id": i}) for i in range(16)]
    module = ClassificationModule(Encoder(), lr=0.05, example_input_array_shape=(2, 1, 2, 8, 8))
    out = tmp_path / "pred" / "predictions.csv"
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=recording_logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=[ClassificationPredictionWriter(out)],
    )
    loader = torch.utils.data.DataLoader
    trainer.fit(module, loader(fit_data, batch_size=4), loader(fit_data, batch_size=8))
    assert {"loss/train_step", "loss/val", "metric/accuracy/val", "metric/f1_score/train"} <= recording_logger.keys()
    assert {"train/examples", "val/examples"} <= set(recording_logger.experiment.tags("add_image"))
    trainer.predict(module, torch.utils.data.DataLoader(predict_data, batch_size=5), return_predictions=False)
    table = pd.read_csv(out)
    assert list(table.columns) == ["fov_name", "id", "label", "prediction"]
    assert table["id"].tolist() == list(range(16))
    assert table["label"].tolist() == y.tolist()
    expected = torch.sigmoid(module(x)).flatten().detach().numpy()
    assert table["prediction"].to_numpy() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(FileExistsError, match="predictions.csv"):
        ClassificationPredictionWriter(out)
