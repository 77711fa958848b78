"""The public surface of viscy-data as the spec states it: constructor arguments, module paths, types.

Users' YAML configs name classes by module path and pass ``init_args`` by name, so names, order and defaults
are contract. Where ours differ on purpose the table says why (the spec's FIX section licenses it).
"""

import importlib
import inspect

import pytest

import viscy_data

# spec argument list -> what we accept. Differences from the spec text, all deliberate:
# - list defaults (``normalizations=[]`` ...) are tuples or None (spec §14.16: mutable defaults);
# - ``seed`` (HCS, Triplet, CellDivision data modules; TripletDataset) and FlexibleBatchSampler ``block_size`` are
#   ours, last, with defaults (spec §14.8/§14.16: reproducible, thread-safe randomness; §14.12: no rank
#   materialises every batch).
SIGNATURES = {
    "SlidingWindowDataset": "positions, channels, z_window_size, array_key='0', transform=None, "
    "load_normalization_metadata=True",
    "MaskTestDataset": "positions, channels, z_window_size, transform=None, ground_truth_masks=None",
    "HCSDataModule": "data_path, source_channel, target_channel, z_window_size, split_ratio=0.8, batch_size=16, "
    "num_workers=8, target_2d=False, yx_patch_size=(256, 256), normalizations=(), augmentations=(), caching=False, "
    "ground_truth_masks=None, persistent_workers=False, prefetch_factor=None, array_key='0', pin_memory=False, "
    "seed=None",
    "TripletDataset": "positions, tracks_tables, channel_names, initial_yx_patch_size, z_range, fit=True, "
    "predict_cells=False, include_fov_names=None, include_track_ids=None, time_interval='any', return_negative=True, "
    "cache_pool_bytes=0, seed=0",
    "TripletDataModule": "data_path, tracks_path, source_channel, z_range, initial_yx_patch_size=(512, 512), "
    "final_yx_patch_size=(224, 224), split_ratio=0.8, batch_size=16, num_workers=1, normalizations=(), "
    "augmentations=(), augment_validation=True, caching=False, fit_include_wells=None, fit_exclude_fovs=None, "
    "predict_cells=False, include_fov_names=None, include_track_ids=None, time_interval='any', return_negative=True, "
    "persistent_workers=False, prefetch_factor=None, pin_memory=False, z_window_size=None, cache_pool_bytes=0, "
    "seed=None",
    "CellDivisionTripletDataset": "data_paths, channel_names, anchor_transform=None, positive_transform=None, "
    "negative_transform=None, fit=True, time_interval='any', return_negative=True, output_2d=False",
    "CellDivisionTripletDataModule": "data_path, source_channel, final_yx_patch_size=(64, 64), split_ratio=0.8, "
    "batch_size=16, num_workers=8, normalizations=(), augmentations=(), augment_validation=True, "
    "time_interval='any', return_negative=True, output_2d=False, persistent_workers=False, prefetch_factor=None, "
    "pin_memory=False, seed=None",
    "ClassificationDataset": "plate, annotation, channel_name, z_range, transform, initial_yx_patch_size, "
    "return_indices=False, label_column='infection_state'",
    "ClassificationDataModule": "image_path, annotation_path, val_fovs, channel_name, z_range, "
    "train_exclude_timepoints, train_transforms, val_transforms, initial_yx_patch_size, batch_size, num_workers, "
    "label_column='infection_state'",
    "CachedOmeZarrDataset": "positions, channel_names, cache_map, transform=None, array_key='0', "
    "load_normalization_metadata=True, skip_cache=False",
    "CachedOmeZarrDataModule": "data_path, channels, batch_size, num_workers, split_ratio, train_cpu_transforms, "
    "val_cpu_transforms, train_gpu_transforms, val_gpu_transforms, pin_memory=True, skip_cache=False, "
    "include_wells=None, exclude_fovs=None, prefetch_factor=None",
    "MmappedDataset": "positions, channel_names, cache_map, buffer, preprocess_transforms=None, cpu_transform=None, "
    "array_key='0', load_normalization_metadata=True",
    "MmappedDataModule": "data_path, channels, batch_size, num_workers, split_ratio, preprocess_transforms, "
    "train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms, pin_memory=True, "
    "prefetch_factor=None, array_key='0', scratch_dir=None, include_wells=None, exclude_fovs=None",
    "CTMCv1DataModule": "train_data_path, val_data_path, train_cpu_transforms, val_cpu_transforms, "
    "train_gpu_transforms, val_gpu_transforms, batch_size=16, num_workers=8, val_subsample_ratio=30, "
    "channel_name='DIC', pin_memory=True",
    "LiveCellDataset": "images, transform, cache_map",
    "LiveCellTestDataset": "image_dir, transform, annotations, load_target=False, load_labels=False",
    "LiveCellDataModule": "train_val_images=None, test_images=None, train_annotations=None, val_annotations=None, "
    "test_annotations=None, train_cpu_transforms=None, val_cpu_transforms=None, train_gpu_transforms=None, "
    "val_gpu_transforms=None, test_transforms=None, batch_size=16, num_workers=8, pin_memory=True",
    "SegmentationDataset": "pred_dataset, target_dataset, pred_channel, target_channel, pred_z_slice, "
    "target_z_slice, img_name='0'",
    "SegmentationDataModule": "pred_dataset, target_dataset, pred_channel, target_channel, pred_z_slice, "
    "target_z_slice, batch_size, num_workers",
    "CombinedDataModule": "data_modules, train_mode='max_size_cycle', val_mode='sequential', "
    "test_mode='sequential', predict_mode='sequential'",
    "ConcatDataModule": "data_modules",
    "BatchedConcatDataset": "datasets",
    "BatchedConcatDataModule": "data_modules",
    "CachedConcatDataModule": "data_modules",
    "ChannelDropout": "channels, p=0.5",
    "ShardedDistributedSampler": "dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False",
    "FlexibleBatchSampler": "valid_anchors, batch_size=128, experiment_aware=True, leaky=0.0, "
    "experiment_weights=None, condition_balanced=True, condition_ratio=None, temporal_enrichment=False, "
    "temporal_window_hours=2.0, temporal_global_fraction=0.3, num_replicas=1, rank=0, seed=0, drop_last=True, "
    "block_size=256",
}


def _render(cls) -> str:
    parts = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self":
            continue
        if p.default is p.empty:
            parts.append(p.name)
            continue
        default = p.default
        if isinstance(default, list):
            default = tuple(default)
        parts.append(f"{p.name}={getattr(default, 'value', default)!r}")  # CombineMode members by value
    return ", ".join(parts)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_constructor_signature(name):
    assert _render(getattr(viscy_data, name)) == SIGNATURES[name]


def test_module_paths_of_configs_and_private_helpers_import():
    modules = (
        "_typing _utils cell_classification cell_division_triplet channel_dropout combined ctmc_v1 distributed "
        "gpu_aug hcs livecell mmap_cache sampler segmentation select triplet"
    ).split()
    for name in modules:
        importlib.import_module(f"viscy_data.{name}")
    from viscy_data import _typing, _utils, select

    for helper in (
        "BatchedCenterSpatialCropd _transform_channel_wise _read_norm_meta _ensure_channel_list _search_int_in_str "
        "_collate_samples _scatter_channels _gather_channels"
    ).split():
        assert callable(getattr(_utils, helper))
    assert callable(select._filter_wells) and callable(select._filter_fovs)
    assert callable(select.SelectWell._filter_fit_fovs)
    for name in "INDEX_COLUMNS NormMeta TrackingIndex TripletSample".split():
        assert hasattr(_typing, name)
    assert list(inspect.signature(_utils.BatchedCenterSpatialCropd).parameters) == [
        "keys",
        "roi_size",
        "allow_missing_keys",
    ]
    # class paths used in configs resolve to the classes the package exports
    assert importlib.import_module("viscy_data.triplet").TripletDataModule is viscy_data.TripletDataModule
    assert importlib.import_module("viscy_data.hcs").HCSDataModule is viscy_data.HCSDataModule


def test_typed_dicts_required_keys():
    from viscy_data import _typing as t

    assert t.ChannelMap.__required_keys__ == {"source"}
    assert t.TripletSample.__required_keys__ == {"anchor"}
    assert t.TripletSample.__optional_keys__ == {"positive", "negative", "index"}
    assert t.Sample.__required_keys__ == frozenset()
    assert set(t.Sample.__optional_keys__) == {"index", "source", "target", "weight", "labels", "norm_meta"}
    assert set(t.SegmentationSample.__required_keys__) == {"pred", "target", "position_idx", "time_idx"}
    assert set(t.TrackingIndex.__required_keys__) == {"fov_name", "id"}
    assert t.HCSStackIndex._fields == ("image", "time", "z")
    assert set(t.LevelNormStats.__annotations__) == {"mean", "std", "median", "iqr"}
    assert set(t.ChannelNormStats.__annotations__) == {"dataset_statistics", "fov_statistics"}


def test_combine_mode_values():
    assert {m.name: m.value for m in viscy_data.CombineMode} == {
        "MIN_SIZE": "min_size",
        "MAX_SIZE_CYCLE": "max_size_cycle",
        "MAX_SIZE": "max_size",
        "SEQUENTIAL": "sequential",
    }


def test_gpu_transform_data_module_abstract_properties():
    assert viscy_data.GPUTransformDataModule.__abstractmethods__ == {
        "train_cpu_transforms",
        "train_gpu_transforms",
        "val_cpu_transforms",
        "val_gpu_transforms",
    }
    assert isinstance(viscy_data.MmappedDataModule.preprocessing_transforms, property)
