from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from _mx_testdata import make_experiment, write_experiments_yaml  # loaded by conftest.py

from dynaclr.datamodule import MultiExperimentDataModule

WELLS = {"uninfected": ["A/1"], "infected": ["B/1"]}


@pytest.fixture
def experiments(tmp_path):
    a = make_experiment(tmp_path, "exp_a", ["Phase3D", "GFP"], ["Phase3D", "GFP"], WELLS, code=1)
    b = make_experiment(tmp_path, "exp_b", ["RFP", "Phase3D"], ["Phase3D", "RFP"], WELLS, code=2, timepoint_stats=True)
    c = make_experiment(tmp_path, "exp_c", ["Phase3D", "GFP"], ["Phase3D", "GFP"], WELLS, code=3)
    return write_experiments_yaml(tmp_path / "experiments.yml", [a, b, c])


def _dm(path, **kw):
    args = dict(
        z_range=(0, 2),
        yx_patch_size=(48, 48),
        final_yx_patch_size=(32, 32),
        val_experiments=["exp_c"],
        tau_range=(0.5, 1.0),
        batch_size=4,
        num_workers=0,
    )
    args.update(kw)
    return MultiExperimentDataModule(str(path), **args)


def test_hyperparameters_and_split(experiments):
    dm = _dm(experiments, leaky=0.25, temporal_enrichment=True, seed=3)
    assert dm.leaky == 0.25 and dm.temporal_enrichment and dm.seed == 3 and dm.channel_dropout_channels == [1]
    assert dm.train_dataset is None
    dm.setup("fit")
    train = set(dm.train_dataset.index.tracks["experiment"])
    val = set(dm.val_dataset.index.tracks["experiment"])
    assert train == {"exp_a", "exp_b"} and val == {"exp_c"}
    loader = dm.train_dataloader()
    sampler = loader.batch_sampler
    assert sampler.leaky == 0.25 and sampler.temporal_enrichment and sampler.seed == 3
    batch = next(iter(loader))
    assert batch["anchor"].shape == (4, 2, 2, 48, 48) and len(batch["anchor_norm_meta"]) == 4
    assert len(next(iter(dm.val_dataloader()))["anchor"]) == 4


def test_experiments_file_alias_and_bad_names(experiments):
    geometry = dict(z_range=(0, 2), yx_patch_size=(48, 48), final_yx_patch_size=(32, 32))
    dm = MultiExperimentDataModule(experiments_file=str(experiments), val_experiments=["exp_c"], **geometry)
    assert dm.experiments_yaml == str(experiments)
    # the spec's required geometry arguments stay required (None is only there for the alias)
    for name in geometry:
        with pytest.raises(ValueError, match=name):
            MultiExperimentDataModule(str(experiments), **{k: v for k, v in geometry.items() if k != name})
    with pytest.raises(ValueError, match="typo"):
        _dm(experiments, val_experiments=["typo"]).setup("fit")
    with pytest.raises(ValueError, match="none is left for training"):
        _dm(experiments, val_experiments=["exp_a", "exp_b", "exp_c"]).setup("fit")


def test_after_batch_transfer_pipeline_and_dropout_only_in_training(experiments):
    from viscy_transforms import NormalizeSampled

    dm = _dm(
        experiments,
        channel_dropout_prob=1.0,
        normalizations=[NormalizeSampled(keys=["ch_0", "ch_1"], level="fov_statistics")],
    )
    dm.setup("fit")
    loader = dm.train_dataloader()

    def run(**state):
        base = dict(
            training=False,
            sanity_checking=False,
            validating=False,
            predicting=False,
            current_epoch=0,
            global_rank=0,
            world_size=1,
        )
        dm.trainer = SimpleNamespace(**{**base, **state})
        return dm.on_after_batch_transfer(next(iter(loader)), 0)

    out = run(training=True)
    assert set(out) == {"anchor", "positive"}
    assert out["anchor"].shape == (4, 2, 2, 32, 32)
    assert torch.all(out["anchor"][:, 1] == 0) and torch.all(out["positive"][:, 1] == 0)
    for state in ({"validating": True}, {"predicting": True}, {"training": True, "sanity_checking": True}):
        out = run(**state)
        assert not torch.all(out["anchor"][:, 1] == 0)
        # normalised with the re-keyed fov statistics: (value - mean) / std == t / 2 for the constant images
        assert torch.all((out["anchor"] >= 0) & (out["anchor"] <= 10))
    assert dm.on_after_batch_transfer(torch.ones(1, 2, 2, 32, 32), 0).shape == (1, 2, 2, 32, 32)


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sums = {}

    def training_step(self, batch, batch_idx):
        self.sums.setdefault(self.current_epoch, []).append(
            (batch["anchor"].sum().item(), batch["positive"].sum().item())
        )
        return (self.w * batch["anchor"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_new_batches_every_epoch_through_trainer(experiments):
    dm = _dm(experiments, val_experiments=[], channel_dropout_prob=0.0, batch_size=8)
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.sums) == 3
    assert model.sums[0] != model.sums[1] != model.sums[2]
    assert trainer.train_dataloader.batch_sampler.epoch == 2
    # the same seed reproduces the whole run
    model2 = _Recorder()
    pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    ).fit(model2, datamodule=_dm(experiments, val_experiments=[], channel_dropout_prob=0.0, batch_size=8))
    assert model2.sums == model.sums


def test_predict_every_observation_in_order(experiments):
    dm = _dm(experiments, predict_experiments=["exp_b"], batch_size=7)
    dm.setup("predict")
    tracks = dm.predict_dataset.index.tracks
    seen = []
    for batch in dm.predict_dataloader():
        assert "positive" not in batch
        seen += [(r["fov_name"], r["id"]) for r in batch["index"]]
    assert seen == list(zip(tracks["fov_name"], tracks["id"]))
    assert set(tracks["experiment"]) == {"exp_b"}
    with pytest.raises(ValueError, match="nope"):
        _dm(experiments, predict_experiments=["nope"]).setup("predict")


def test_val_loader_shards_equal_lengths(experiments):
    dm = _dm(experiments, batch_size=3)
    dm.setup("fit")
    n = len(dm.val_dataset)
    per_rank = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        per_rank.append([b for b in dm._sequential(dm.val_dataset)])
    assert len(per_rank[0]) == len(per_rank[1])
    assert set(np.concatenate([np.concatenate(r) for r in per_rank])) == set(range(n))


def test_single_channel_experiments_train_with_the_default_dropout(tmp_path):
    one = make_experiment(tmp_path, "one", ["Phase3D"], ["Phase3D"], WELLS, code=1)
    two = make_experiment(tmp_path, "two", ["Phase3D"], ["Phase3D"], WELLS, code=2)
    path = write_experiments_yaml(tmp_path / "single.yml", [one, two])
    dm = _dm(path, val_experiments=["two"], channel_dropout_prob=1.0)
    dm.setup("fit")
    assert dm.channel_dropout_channels == [] and dm.channel_dropout.channels == []
    dm.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1, current_epoch=0)
    out = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert out["anchor"].shape == (4, 1, 2, 32, 32) and torch.all(out["anchor"] != 0)
    with pytest.raises(ValueError, match=r"channel_dropout_channels \[1\].*1 source channel"):
        _dm(path, val_experiments=["two"], channel_dropout_channels=[1]).setup("fit")


def test_arguments_that_do_not_fit_the_data_fail_before_training(experiments):
    from viscy_transforms import NormalizeSampled

    with pytest.raises(ValueError, match="final_yx_patch_size .* is larger than yx_patch_size"):
        _dm(experiments, final_yx_patch_size=(64, 64)).setup("fit")
    with pytest.raises(ValueError, match=r"batch_size=10000.*set batch_size <="):
        _dm(experiments, batch_size=10_000).setup("fit")
    with pytest.raises(ValueError, match=r"normalizations\[0\] \(NormalizeSampled\) names key\(s\) \['Phase3D'\]"):
        _dm(experiments, normalizations=[NormalizeSampled(keys=["Phase3D"], level="fov_statistics")]).setup("fit")
    with pytest.raises(ValueError, match="widen tau_range"):
        _dm(experiments, tau_range=(0.01, 0.1)).setup("fit")


def _attach_model(dm, loss):
    from dynaclr.engine import ContrastiveModule

    model = ContrastiveModule(torch.nn.Identity(), loss_function=loss)
    dm.trainer = SimpleNamespace(lightning_module=model, global_rank=0, world_size=1, current_epoch=0)


def test_hcl_beta_checked_against_the_loss_and_negatives_for_margin_losses(experiments):
    from dynaclr.loss import NTXentHCL

    dm = _dm(experiments, hcl_beta=0.5)
    _attach_model(dm, NTXentHCL(beta=0.5))
    dm.setup("fit")  # same beta: silent
    assert "negative" not in dm.train_dataset.__getitems__([0, 1])
    dm = _dm(experiments, hcl_beta=0.5)
    _attach_model(dm, NTXentHCL(beta=1.0))
    with pytest.warns(UserWarning, match=r"hcl_beta=0.5 differs .*NTXentHCL\(beta=1.0\)"):
        dm.setup("fit")
    dm = _dm(experiments)
    _attach_model(dm, torch.nn.TripletMarginLoss())
    dm.setup("fit")
    batch = dm.train_dataset.__getitems__([0, 1, 2])
    assert batch["negative"].shape == batch["anchor"].shape and len(batch["negative_norm_meta"]) == 3
    lineage = dm.train_dataset.index.lineage_codes
    rows = dm.train_dataset._rows[[0, 1, 2]]
    rng = np.random.default_rng(0)
    negatives = dm.train_dataset._negatives(rows, rng)
    assert np.all(lineage[negatives] != lineage[rows])
    experiment = dm.train_dataset.index.experiment_codes
    assert np.all(experiment[negatives] == experiment[rows])


def test_same_frame_positives_change_only_the_positives(experiments):
    # the tau = 0 ablation: the same anchors in the same batches, each its own positive (before augmentation)
    temporal, ablation = _dm(experiments, seed=5), _dm(experiments, seed=5, same_frame_positives=True)
    assert ablation.same_frame_positives and not temporal.same_frame_positives
    for dm in (temporal, ablation):
        dm.setup("fit")
    assert len(ablation.train_dataset) == len(temporal.train_dataset)
    for a, t in zip(ablation.train_dataloader(), temporal.train_dataloader()):
        torch.testing.assert_close(a["anchor"], t["anchor"])
        torch.testing.assert_close(a["positive"], a["anchor"])
    assert not torch.equal(t["positive"], t["anchor"])
