import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset

from viscy_data.combined import (
    BatchedConcatDataModule,
    BatchedConcatDataset,
    CachedConcatDataModule,
    CombinedDataModule,
    CombineMode,
    ConcatDataModule,
)


class ValueDataset(Dataset):
    """Items {"x": (1,) value}; values encode the child (tag * 100 + i)."""

    def __init__(self, n, tag):
        self.values = torch.arange(n, dtype=torch.float32) + 100 * tag

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        return {"x": self.values[i : i + 1]}


class BatchedValueDataset(ValueDataset):
    """Batch-reading variant (like TripletDataset): one dict per batch."""

    def __getitems__(self, indices):
        return {"x": self.values[indices][:, None], "ids": [int(v) for v in self.values[indices]]}


class ToyDataModule(LightningDataModule):
    def __init__(self, tag, n_train=6, n_val=4, batch_size=2, num_workers=0, patches=None, batched=False):
        super().__init__()
        self.dataset_class = BatchedValueDataset if batched else ValueDataset
        self.tag, self.n_train, self.n_val = tag, n_train, n_val
        self.batch_size, self.num_workers = batch_size, num_workers
        if patches is not None:
            self.train_patches_per_stack = patches
        self.setup_stages = []

    def setup(self, stage):
        self.setup_stages.append(stage)
        self.train_dataset = self.dataset_class(self.n_train, self.tag)
        self.val_dataset = self.dataset_class(self.n_val, self.tag)

    def _loader(self, dataset):
        return DataLoader(dataset, batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader(self.train_dataset)

    def val_dataloader(self):
        return self._loader(self.val_dataset)

    test_dataloader = val_dataloader
    predict_dataloader = val_dataloader

    def on_after_batch_transfer(self, batch, dataloader_idx):
        batch = dict(batch)
        batch["hooked_by"] = torch.full((len(batch["x"]),), self.tag)
        return batch


class Recorder(LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.train_batches, self.val_batches = [], []

    def training_step(self, batch, batch_idx):
        self.train_batches.append(batch)
        return (self.weight**2).sum()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.val_batches.append((dataloader_idx, batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(**kwargs):
    return Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_combine_mode_values():
    assert [m.value for m in CombineMode] == ["min_size", "max_size_cycle", "max_size", "sequential"]


def test_combined_loaders_follow_modes():
    dm = CombinedDataModule([ToyDataModule(1, n_train=6), ToyDataModule(2, n_train=2)], train_mode="min_size")
    dm.setup("fit")
    assert dm.train_mode is CombineMode.MIN_SIZE and dm.val_mode is CombineMode.SEQUENTIAL
    train = [batch for batch, _, _ in dm.train_dataloader()]
    assert len(train) == 1 and train[0][0]["x"].flatten().tolist() == [100, 101]
    dm = CombinedDataModule([ToyDataModule(1, n_train=6), ToyDataModule(2, n_train=2)])
    dm.setup("fit")
    train = [batch for batch, _, _ in dm.train_dataloader()]
    assert len(train) == 3  # max_size_cycle: the short child cycles
    assert [b[1]["x"].flatten().tolist() for b in train] == [[200, 201]] * 3
    val = [(idx, batch["x"].flatten().tolist()) for batch, _, idx in dm.val_dataloader()]
    assert val == [(0, [100, 101]), (0, [102, 103]), (1, [200, 201]), (1, [202, 203])]


def test_combined_forwards_hooks_and_trainer():
    children = [ToyDataModule(1), ToyDataModule(2)]
    dm = CombinedDataModule(children)
    model = Recorder()
    trainer = _trainer(limit_train_batches=2)
    trainer.fit(model, datamodule=dm)
    assert all(child.trainer is trainer for child in children)
    for batch in model.train_batches:  # one entry per child, each through its own hook
        assert batch[0]["hooked_by"].tolist() == [1, 1] and batch[1]["hooked_by"].tolist() == [2, 2]
    for idx, batch in model.val_batches:  # sequential: the hook of the child the batch came from
        assert (batch["hooked_by"] == idx + 1).all() and (batch["x"] // 100 == idx + 1).all()
    assert {idx for idx, _ in model.val_batches} == {0, 1}


def test_concat_consistency_checks():
    with pytest.raises(ValueError, match="Inconsistent number of workers"):
        ConcatDataModule([ToyDataModule(1), ToyDataModule(2, num_workers=1)])
    with pytest.raises(ValueError, match="Inconsistent batch size"):
        ConcatDataModule([ToyDataModule(1), ToyDataModule(2, batch_size=4)])
    dm = ConcatDataModule([ToyDataModule(1, patches=2), ToyDataModule(2, patches=1)])
    with pytest.raises(ValueError, match="Inconsistent patches per stack"):
        dm.setup("fit")


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_concat_unsupported_stage_touches_no_child(stage):
    children = [ToyDataModule(1), ToyDataModule(2)]
    with pytest.raises(NotImplementedError, match="Only fit and validate"):
        ConcatDataModule(children).setup(stage)
    assert all(child.setup_stages == [] for child in children)


def test_concat_fit_and_validate():
    dm = ConcatDataModule([ToyDataModule(1, batch_size=4), ToyDataModule(2, batch_size=4)])
    dm.setup("fit")
    assert dm.train_patches_per_stack == 1  # children without the attribute do not divide by zero
    assert len(dm.train_dataset) == 12 and len(dm.val_dataset) == 8
    values = sorted(v for batch in dm.train_dataloader() for v in batch["x"].flatten().tolist())
    assert values == [100 + i for i in range(6)] + [200 + i for i in range(6)]
    dm = ConcatDataModule([ToyDataModule(1), ToyDataModule(2)])
    dm.setup("validate")
    assert len(dm.val_dataset) == 8 and not hasattr(dm, "train_dataset")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert batch["hooked_by"].tolist() == [1, 1]


def test_concat_train_batch_divides_by_patches():
    dm = ConcatDataModule([ToyDataModule(1, batch_size=4, patches=2), ToyDataModule(2, batch_size=4, patches=2)])
    dm.setup("fit")
    assert dm.train_dataloader().batch_size == 2 and dm.val_dataloader().batch_size == 4


def test_batched_concat_dataset_groups_by_child():
    dataset = BatchedConcatDataset([BatchedValueDataset(3, 1), BatchedValueDataset(4, 2)])
    with pytest.raises(NotImplementedError):
        dataset[0]
    micro = dataset.__getitems__([0, 4, -1, 2])
    assert [m["_dataset_idx"] for m in micro] == [0, 1]
    assert micro[0]["ids"] == [100, 102] and micro[1]["ids"] == [201, 203]
    with pytest.raises(ValueError, match=r"\[7\]"):
        dataset.__getitems__([1, 7])


def test_batched_concat_module_merges_micro_batches():
    dm = BatchedConcatDataModule([ToyDataModule(t, batch_size=4, batched=True) for t in (1, 2)])
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 12 items, drop_last
    for raw in batches:
        assert isinstance(raw, list) and all("_dataset_idx" in m for m in raw)
        merged = dm.on_after_batch_transfer(raw, 0)
        assert merged["x"].shape == (4, 1) and len(merged["ids"]) == 4
        # each item went through its own child's hook
        assert (merged["hooked_by"] == merged["x"].flatten() // 100).all()
        assert "_dataset_idx" not in merged
    seen = sorted(i for raw in batches for m in raw for i in m["ids"])
    assert len(seen) == 12 and len(set(seen)) == 12
    val = list(dm.val_dataloader())
    assert sum(len(m["ids"]) for raw in val for m in raw) == 8


def test_cached_concat_returns_item_lists():
    dm = CachedConcatDataModule([ToyDataModule(1, batch_size=4), ToyDataModule(2, batch_size=4)])
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == 3 and all(isinstance(b, list) and len(b) == 4 for b in train)
    val = list(dm.val_dataloader())
    assert [len(b) for b in val] == [4, 4]
    assert [item["x"].item() for b in val for item in b] == [100, 101, 102, 103, 200, 201, 202, 203]
    with pytest.raises(NotImplementedError):
        dm.setup("test")
