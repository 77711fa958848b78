import sys
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from viscy_utils.callbacks import EmbeddingWriter
from viscy_utils.callbacks import embedding_writer as ew
from viscy_utils.callbacks.embedding_writer import (
    get_available_index_columns,
    read_embedding_dataset,
    write_embedding_dataset,
)


def _index(n, offset=0):
    return pd.DataFrame(
        {
            "fov_name": [f"/A/1/{i % 2}/" for i in range(n)],
            "track_id": np.arange(n) + offset,
            "t": np.arange(n) % 5,
            "id": np.arange(n) + 1000 + offset,
            "parent_track_id": -np.ones(n, dtype=int),
            "parent_id": -np.ones(n, dtype=int),
            "z": np.zeros(n, dtype=int),
            "y": np.arange(n) * 2.0,
            "x": np.arange(n) * 3.0,
        },
        index=np.zeros(n, dtype=int),  # duplicated batch indices, as concatenated batches produce
    )


def _data(n=12, f=6, p=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, f)).astype(np.float32), rng.normal(size=(n, p)).astype(np.float32)


def test_round_trip_with_anndata(tmp_path):
    features, projections = _data()
    path = tmp_path / "emb.zarr"
    write_embedding_dataset(path, features, _index(12), projections=projections)
    adata = ad.read_zarr(path)
    np.testing.assert_array_equal(adata.X, features)
    np.testing.assert_array_equal(adata.obsm["X_projections"], projections)
    assert list(adata.obs.columns) == ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
    assert list(adata.obs["fov_name"].unique()) == ["A/1/0", "A/1/1"]
    assert list(adata.obs.index) == [str(i) for i in range(12)]  # unique, no duplicate warning
    np.testing.assert_array_equal(adata.obs["track_id"], np.arange(12))
    assert set(adata.obsm) == {"X_projections"}
    assert [p.name for p in tmp_path.iterdir()] == ["emb.zarr"]  # no temporary left behind


def test_overwrite_semantics(tmp_path):
    features, projections = _data()
    path = tmp_path / "emb.zarr"
    write_embedding_dataset(path, features, _index(12))
    with pytest.raises(FileExistsError, match=str(path)):
        write_embedding_dataset(path, features * 2, _index(12))
    np.testing.assert_array_equal(ad.read_zarr(path).X, features)
    write_embedding_dataset(path, features[:5] * 2, _index(5), overwrite=True)
    np.testing.assert_array_equal(ad.read_zarr(path).X, features[:5] * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.zarr"]


def test_failed_write_leaves_old_store_or_nothing(tmp_path, monkeypatch):
    features, _ = _data()
    path = tmp_path / "emb.zarr"
    real = ad.AnnData.write_zarr

    def crash(self, store, **kwargs):
        real(self, store, **kwargs)  # the temporary store is fully written...
        raise KeyboardInterrupt  # ...but we are interrupted before the rename

    monkeypatch.setattr(ad.AnnData, "write_zarr", crash)
    with pytest.raises(KeyboardInterrupt):
        write_embedding_dataset(path, features, _index(12))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(ad.AnnData, "write_zarr", real)
    write_embedding_dataset(path, features, _index(12))
    monkeypatch.setattr(ad.AnnData, "write_zarr", crash)
    with pytest.raises(KeyboardInterrupt):
        write_embedding_dataset(path, features * 0, _index(12), overwrite=True)
    np.testing.assert_array_equal(ad.read_zarr(path).X, features)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.zarr"]


def test_bad_inputs(tmp_path):
    features, projections = _data()
    with pytest.raises(ValueError, match="fov_name"):
        write_embedding_dataset(tmp_path / "a.zarr", features, _index(12).drop(columns="fov_name"))
    with pytest.raises(ValueError, match="11 rows but features have 12"):
        write_embedding_dataset(tmp_path / "a.zarr", features, _index(11))
    with pytest.raises(ValueError, match="projections have 4 rows"):
        write_embedding_dataset(tmp_path / "a.zarr", features, _index(12), projections=projections[:4])
    with pytest.raises(ValueError, match="write_interval='epoch' only"):
        EmbeddingWriter(tmp_path / "a.zarr", write_interval="batch")


def test_missing_anndata_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)
    features, _ = _data()
    with pytest.raises(ImportError, match=r'pip install "viscy-utils\[anndata\]"'):
        write_embedding_dataset(tmp_path / "a.zarr", features, _index(12))


def test_pca_and_reader_coordinates(tmp_path):
    features, _ = _data(n=30, f=8)
    path = tmp_path / "emb.zarr"
    pca_kwargs = {"n_components": 4}
    write_embedding_dataset(path, features, _index(30), pca_kwargs=pca_kwargs)
    assert pca_kwargs == {"n_components": 4}
    pcs = ad.read_zarr(path).obsm["X_pca"]
    assert pcs.shape == (30, 4)
    variances = pcs.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-9)  # components ordered by explained variance
    standardised = (features - features.mean(0)) / features.std(0)
    np.testing.assert_allclose(np.abs(pcs), np.abs(standardised @ np.linalg.svd(standardised)[2][:4].T), atol=1e-4)
    ds = read_embedding_dataset(path)
    np.testing.assert_allclose(ds["PC1"].values, pcs[:, 0])


@pytest.mark.slow  # numba compilation of UMAP takes ~30 s on 2 cores
def test_reductions_and_kwargs_are_not_mutated(tmp_path):
    features, projections = _data(n=30, f=8)
    umap_kwargs = {"n_neighbors": 100}  # too large: reduced to min(15, n // 2)
    phate_kwargs = {"knn": 3}
    pca_kwargs = {"n_components": 4}
    path = tmp_path / "emb.zarr"
    write_embedding_dataset(
        path,
        features,
        _index(30),
        projections=projections,
        umap_kwargs=umap_kwargs,
        phate_kwargs=phate_kwargs,
        pca_kwargs=pca_kwargs,
    )
    assert umap_kwargs == {"n_neighbors": 100} and phate_kwargs == {"knn": 3}
    adata = ad.read_zarr(path)
    assert adata.obsm["X_umap"].shape == (30, 2)
    assert adata.obsm["X_phate"].shape == (30, 2)
    assert adata.obsm["X_pca"].shape == (30, 4)
    assert np.isfinite(adata.obsm["X_umap"]).all()
    # PCA of standardised features: first component carries the most variance
    assert adata.obsm["X_pca"][:, 0].var() >= adata.obsm["X_pca"][:, 3].var()
    # the reader exposes the reductions as legacy coordinates
    ds = read_embedding_dataset(path)
    np.testing.assert_allclose(ds["PC1"].values, adata.obsm["X_pca"][:, 0])
    assert {"UMAP1", "UMAP2", "PHATE1", "PHATE2"} <= set(ds.coords)


def test_read_embedding_dataset_from_anndata_store(tmp_path):
    features, projections = _data()
    path = tmp_path / "emb.zarr"
    write_embedding_dataset(path, features, _index(12), projections=projections)
    ds = read_embedding_dataset(path)
    assert isinstance(ds, xr.Dataset)
    np.testing.assert_array_equal(ds["features"].values, features)
    np.testing.assert_array_equal(ds["projections"].values, projections)
    assert list(ds.indexes["sample"].names) == ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id"] + [
        "z",
        "y",
        "x",
    ]
    one = ds.sel(fov_name="A/1/1", track_id=3)
    np.testing.assert_array_equal(np.squeeze(one["features"].values), features[3])


def test_read_legacy_xarray_store_and_available_columns(tmp_path, caplog):
    features, projections = _data()
    index = _index(12)
    legacy = xr.Dataset(
        {"features": (("sample", "features"), features), "projections": (("sample", "projections"), projections)},
        coords={c: ("sample", index[c].to_numpy()) for c in ["fov_name", "track_id", "t", "id"]},
    )
    legacy = legacy.assign_coords(UMAP1=("sample", np.arange(12.0)))
    path = tmp_path / "legacy.zarr"
    legacy.to_zarr(path)
    with caplog.at_level("WARNING"):
        ds = read_embedding_dataset(path)
    assert "legacy dataset format" in caplog.text
    assert list(ds.indexes["sample"].names) == ["fov_name", "track_id", "t", "id"]
    np.testing.assert_array_equal(ds["features"].values, features)
    assert get_available_index_columns(legacy) == ["fov_name", "track_id", "t", "id"]
    adata = ad.AnnData(X=features, obs=index.reset_index(drop=True).set_axis([str(i) for i in range(12)]))
    assert get_available_index_columns(adata)[-3:] == ["z", "y", "x"]
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        read_embedding_dataset(tmp_path / "missing.zarr")


def test_writer_in_a_real_prediction(tmp_path, toys):
    from lightning.pytorch import Trainer

    path = tmp_path / "pred.zarr"
    trainer_kwargs = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    writer = EmbeddingWriter(path)
    Trainer(callbacks=[writer], **trainer_kwargs).predict(toys.ToyModule(), datamodule=toys.ToyDataModule(10, 4))
    adata = ad.read_zarr(path)
    assert adata.shape == (10, 2)
    assert adata.obsm["X_projections"].shape == (10, 3)
    assert list(adata.obs["fov_name"]) == ["A/1/0"] * 4 + ["A/1/1"] * 4 + ["A/1/2"] * 2
    np.testing.assert_array_equal(adata.obs["id"], [0, 1, 2, 3, 100, 101, 102, 103, 200, 201])
    # an existing store fails before predicting, unless overwrite=True
    with pytest.raises(FileExistsError, match="already exists"):
        Trainer(callbacks=[EmbeddingWriter(path)], **trainer_kwargs).predict(
            toys.ToyModule(), datamodule=toys.ToyDataModule(6, 3)
        )
    Trainer(callbacks=[EmbeddingWriter(path, overwrite=True)], **trainer_kwargs).predict(
        toys.ToyModule(), datamodule=toys.ToyDataModule(6, 3)
    )
    assert ad.read_zarr(path).shape == (6, 2)


def test_an_unwritable_output_folder_fails_before_predicting(tmp_path, toys):
    from lightning.pytorch import Trainer

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    predicted = []

    class Count(toys.ToyModule):
        def predict_step(self, batch, batch_idx):
            predicted.append(batch_idx)
            return super().predict_step(batch, batch_idx)

    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.callbacks.append(EmbeddingWriter(blocker / "pred.zarr"))
    with pytest.raises(PermissionError, match=f"embeddings output folder {blocker} is not writable"):
        trainer.predict(Count(two_outputs=True), datamodule=toys.ToyDataModule(6, 3))
    assert predicted == []


def _prediction(n, offset):
    return {
        "features": torch.full((n, 4), float(offset)),
        "projections": torch.full((n, 2), float(offset)),
        "index": [{"fov_name": "A/1/0", "id": torch.tensor(offset + i), "track_id": i} for i in range(n)],
    }


def test_multi_rank_writes_only_on_rank_zero(tmp_path, monkeypatch):
    """Two ranks: rank 1 sends its predictions and waits; rank 0 writes everything once."""
    import torch.distributed as dist

    path = tmp_path / "ddp.zarr"
    rank_payloads = {}
    barriers = []

    def fake_gather(obj, gather_list, dst):
        assert dst == 0
        rank_payloads[trainer.global_rank] = obj
        if gather_list is not None:  # rank 0 receives both
            gather_list[0] = obj
            gather_list[1] = rank1_payload

    monkeypatch.setattr(dist, "gather_object", fake_gather)
    strategy = SimpleNamespace(barrier=lambda name=None: barriers.append(name))
    writer = EmbeddingWriter(path)

    trainer = SimpleNamespace(world_size=2, global_rank=1, strategy=strategy)
    writer.write_on_epoch_end(trainer, None, [_prediction(3, 100)], None)
    assert not path.exists()  # rank 1 never writes
    rank1_payload = rank_payloads[1]

    trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=strategy)
    writer.write_on_epoch_end(trainer, None, [_prediction(2, 0), _prediction(2, 10)], None)
    assert len(barriers) == 2
    adata = ad.read_zarr(path)
    np.testing.assert_array_equal(adata.obs["id"], [0, 1, 10, 11, 100, 101, 102])
    np.testing.assert_array_equal(adata.X[:, 0], [0, 0, 10, 10, 100, 100, 100])
    assert list(adata.obs.index) == [str(i) for i in range(7)]


def test_rank_without_predictions_is_skipped(tmp_path, monkeypatch):
    import torch.distributed as dist

    def fake_gather(obj, gather_list, dst):
        gather_list[0], gather_list[1] = obj, None

    monkeypatch.setattr(dist, "gather_object", fake_gather)
    trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=SimpleNamespace(barrier=lambda name=None: None))
    EmbeddingWriter(tmp_path / "x.zarr").write_on_epoch_end(trainer, None, [_prediction(2, 0)], None)
    assert ad.read_zarr(tmp_path / "x.zarr").shape == (2, 4)
    assert ew.EmbeddingWriter._collect([]) is None


@pytest.mark.slow  # starts two processes
def test_ddp_spawn_two_ranks_write_one_complete_store(tmp_path, toys):
    from lightning.pytorch import Trainer

    path = tmp_path / "ddp.zarr"
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        callbacks=[EmbeddingWriter(path)],
    )
    torch.manual_seed(0)
    model = toys.ToyModule()
    trainer.predict(model, datamodule=toys.ToyDataModule(10, 2), return_predictions=False)
    single = tmp_path / "single.zarr"
    Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[EmbeddingWriter(single)]).predict(
        model, datamodule=toys.ToyDataModule(10, 2)
    )
    ddp, reference = ad.read_zarr(path), ad.read_zarr(single)
    assert ddp.shape == (10, 2)
    # every sample exactly once, although each rank predicted only its shard
    np.testing.assert_allclose(np.sort(ddp.X, axis=0), np.sort(reference.X, axis=0), rtol=1e-6)
    assert list(ddp.obs.index) == [str(i) for i in range(10)]
