"""A failed read stops the loop with an error naming file, FOV, timepoint, array and request.

The corrupt chunk is a truncated chunk file (what an interrupted copy leaves); the loaders are the ones
users run: HCSDataModule with worker processes, TripletDataModule with thread workers, and both
under Lightning's ``fit``, ``validate`` and ``predict``.
"""

import warnings

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from viscy_data.errors import ImageReadError
from viscy_data.hcs import HCSDataModule
from viscy_data.synthetic import corrupt_timepoint, write_synthetic_plate
from viscy_data.triplet import TripletDataModule

BAD_FOV, BAD_T = "A/2/0", 2


@pytest.fixture
def corrupt_plate(tmp_path, request):
    # triplet splits need two usable tracks each (negatives); the HCS tests keep their small plate
    cells_per_fov = 8 if "triplet" in request.node.name else 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plate = write_synthetic_plate(
            tmp_path / "plate.zarr", n_timepoints=4, z_size=2, yx_size=(64, 64), cells_per_fov=cells_per_fov, seed=3
        )
    corrupt_timepoint(plate.store_path, BAD_FOV, BAD_T)
    return plate


def _assert_names_the_culprit(message: str, plate) -> None:
    assert f"FOV '{BAD_FOV}'" in message
    assert f"timepoint {BAD_T}" in message
    assert "array '0'" in message
    assert str(plate.store_path / BAD_FOV / "0") in message
    assert "array shape (4, 2, 2, 64, 64)" in message


def _hcs(plate, num_workers):
    return HCSDataModule(
        plate.store_path,
        source_channel="Phase3D",
        target_channel="GFP",
        z_window_size=2,
        batch_size=4,
        num_workers=num_workers,
        yx_patch_size=(32, 32),
        seed=0,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_hcs_loader_raises_the_named_error_from_worker_processes(corrupt_plate, num_workers):
    dm = _hcs(corrupt_plate, num_workers)
    dm.setup("predict")
    with pytest.raises(ImageReadError) as info:
        for _ in dm.predict_dataloader():
            pass
    _assert_names_the_culprit(str(info.value), corrupt_plate)
    assert "(c=[Phase3D] z=0:2)" in str(info.value)  # prediction reads the source channel only


def _triplet(plate, num_workers, z_range=(0, 2), return_negative=True):
    return TripletDataModule(
        return_negative=return_negative,
        data_path=plate.store_path,
        tracks_path=plate.tracks_path,
        source_channel=["Phase3D", "GFP"],
        z_range=z_range,
        initial_yx_patch_size=(32, 32),
        final_yx_patch_size=(32, 32),
        batch_size=4,
        num_workers=num_workers,
        seed=0,
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_triplet_thread_loader_raises_the_named_error(corrupt_plate, num_workers):
    dm = _triplet(corrupt_plate, num_workers)
    dm.setup("predict")
    with pytest.raises(ImageReadError) as info:
        for _ in dm.predict_dataloader():
            pass
    _assert_names_the_culprit(str(info.value), corrupt_plate)
    assert "c=[Phase3D, GFP] z=0:2 y=" in str(info.value)


class _Tiny(LightningModule):
    """Accepts HCS (source/target) and triplet (anchor) batches."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        images = batch["source"] if "source" in batch else batch["anchor"]
        return (images.float().mean() * self.weight).sum() + self.weight.pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("loss", self.training_step(batch, batch_idx))

    def predict_step(self, batch, batch_idx):
        return self.training_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("loader", ["hcs_processes", "triplet_threads"])
def test_fit_stops_with_the_read_error_instead_of_a_short_epoch(corrupt_plate, tmp_path, loader):
    dm = _hcs(corrupt_plate, 2) if loader == "hcs_processes" else _triplet(corrupt_plate, 2)
    trainer = _trainer(tmp_path, limit_val_batches=0)
    with pytest.raises(ImageReadError) as info:
        trainer.fit(_Tiny(), datamodule=dm)
    _assert_names_the_culprit(str(info.value), corrupt_plate)
    assert trainer.state.status == "interrupted"


def _trainer(tmp_path, **kwargs):
    return Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **kwargs,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stage", ["validate", "predict"])
@pytest.mark.parametrize("loader", ["hcs_processes", "triplet_threads"])
def test_validate_and_predict_stop_with_the_read_error(corrupt_plate, tmp_path, loader, stage):
    for fov in corrupt_plate.fov_names:  # whichever FOVs the validation split holds, one of them fails
        if fov != BAD_FOV:
            corrupt_timepoint(corrupt_plate.store_path, fov, BAD_T)
    # the validation FOV of this plate has a single track: no negatives to draw (not the point here)
    dm = _hcs(corrupt_plate, 2) if loader == "hcs_processes" else _triplet(corrupt_plate, 2, return_negative=False)
    trainer = _trainer(tmp_path)
    with pytest.raises(ImageReadError) as info:
        getattr(trainer, stage)(_Tiny(), datamodule=dm)
    message = str(info.value)
    assert f"timepoint {BAD_T}" in message and "array '0'" in message and "array shape (4, 2, 2, 64, 64)" in message
    assert str(corrupt_plate.store_path) in message
    assert trainer.state.status == "interrupted"
