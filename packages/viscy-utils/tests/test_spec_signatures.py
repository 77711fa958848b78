"""The public surface of viscy-utils as the spec states it: module paths, function and class arguments.

Users call these from scripts and notebooks (and the CLI exposes the trainer methods as flags), so names,
order and defaults are contract. Where ours differ on purpose the table says why (spec §9 licenses it).
"""

import importlib
import inspect

import pytest

# "module:name" -> arguments (defaults as repr). Deliberate differences from the spec text:
# - ``knn_accuracy(leave_one_out=True)``: W10, scoring on the training data itself is optimistic;
# - ``compute_embeddings_smoothness(seed=42)``: W14, no global numpy seeding;
# - ``compute_piece_wise_distance(groupby=None)`` = ["fov_name", "track_id"] (no mutable default);
# - ``render_images(cmaps=())`` (no mutable default);
# - ``VisCyTrainer.export(output_names=None)``: W15, outputs named after the module's outputs.
SIGNATURES = {
    "viscy_utils.cli_utils:format_markdown_table": "data, title=None, headers=None",
    "viscy_utils.cli_utils:load_config": "config_path",
    "viscy_utils.callbacks.embedding_writer:EmbeddingWriter": "output_path, write_interval='epoch', umap_kwargs=None, "
    "phate_kwargs=None, pca_kwargs=None, overwrite=False",
    "viscy_utils.callbacks.embedding_writer:write_embedding_dataset": "output_path, features, index_df, "
    "projections=None, umap_kwargs=None, phate_kwargs=None, pca_kwargs=None, overwrite=False",
    "viscy_utils.callbacks.embedding_writer:read_embedding_dataset": "path",
    "viscy_utils.callbacks.embedding_writer:get_available_index_columns": "dataset, dataset_path=None",
    "viscy_utils.meta_utils:generate_normalization_metadata": "zarr_dir, num_workers=4, channel_ids=-1, "
    "grid_spacing=32",
    "viscy_utils.meta_utils:write_meta_field": "position, metadata, field_name, subfield_name",
    "viscy_utils.precompute:precompute_array": "data_path, output_path, channel_names, subtrahends, divisors, "
    "image_array_key='0', include_wells=None, exclude_fovs=None",
    "viscy_utils.normalize:zscore": "input_image, im_mean=None, im_std=None",
    "viscy_utils.normalize:unzscore": "im_norm, zscore_median, zscore_iqr",
    "viscy_utils.normalize:hist_clipping": "input_image, min_percentile=2, max_percentile=98",
    "viscy_utils.normalize:hist_adapteq_2D": "input_image, kernel_size=None, clip_limit=None",
    "viscy_utils.mp_utils:mp_wrapper": "fn, fn_args, workers",
    "viscy_utils.mp_utils:mp_get_val_stats": "fn_args, workers",
    "viscy_utils.mp_utils:get_val_stats": "sample_values",
    "viscy_utils.log_images:detach_sample": "imgs, log_samples_per_batch",
    "viscy_utils.log_images:render_images": "imgs, cmaps=()",
    "viscy_utils.trainer:VisCyTrainer.preprocess": "data_path, channel_names=-1, num_workers=1, block_size=32, "
    "model=None",
    "viscy_utils.trainer:VisCyTrainer.export": "model, export_path, ckpt_path, format='onnx', output_names=None",
    "viscy_utils.trainer:VisCyTrainer.precompute": "data_path, output_path, channel_names, subtrahends, divisors, "
    "image_array_key='0', include_wells=None, exclude_fovs=None, model=None",
    "viscy_utils.trainer:VisCyTrainer.convert_to_anndata": "embeddings_path, output_anndata_path, overwrite=False, "
    "model=None",
    "viscy_utils.evaluation.annotation:convert": "embeddings_ds, output_path, overwrite=False, return_anndata=False",
    "viscy_utils.evaluation.annotation:load_annotation_anndata": "adata, path, name, categories=None",
    "viscy_utils.evaluation.dimensionality_reduction:compute_phate": "embedding_dataset, scale_embeddings=False, "
    "n_components=2, knn=5, decay=40, update_dataset=False, random_state=42, **phate_kwargs",
    "viscy_utils.evaluation.dimensionality_reduction:compute_pca": "embedding_dataset, n_components=None, "
    "normalize_features=True",
    "viscy_utils.evaluation.dimensionality_reduction:_fit_transform_umap": "embeddings, n_components=2, "
    "n_neighbors=15, normalize=True",
    "viscy_utils.evaluation.dimensionality_reduction:compute_umap": "embedding_dataset, normalize_features=True",
    "viscy_utils.evaluation.clustering:knn_accuracy": "embeddings, annotations, k=5, leave_one_out=True",
    "viscy_utils.evaluation.clustering:pairwise_distance_matrix": "features, metric='cosine', device='auto'",
    "viscy_utils.evaluation.clustering:rank_nearest_neighbors": "cross_dissimilarity, normalize=True",
    "viscy_utils.evaluation.clustering:select_block": "distances, index",
    "viscy_utils.evaluation.clustering:compare_time_offset": "single_track_distances, time_offset=1",
    "viscy_utils.evaluation.clustering:dbscan_clustering": "embeddings, eps=0.5, min_samples=5",
    "viscy_utils.evaluation.clustering:clustering_evaluation": "embeddings, annotations, method='nmi'",
    "viscy_utils.evaluation.distance:calculate_cosine_similarity_cell": "embedding_dataset, fov_name, track_id",
    "viscy_utils.evaluation.distance:compute_track_displacement": "embedding_dataset, distance_metric='cosine'",
    "viscy_utils.evaluation.smoothness:compute_piece_wise_distance": "features_df, cross_dist, rank_fractions, "
    "groupby=None",
    "viscy_utils.evaluation.smoothness:find_distribution_peak": "data, method='kde_robust'",
    "viscy_utils.evaluation.smoothness:compute_embeddings_smoothness": "features_ad, distance_metric='cosine', "
    "verbose=False, seed=42",
    "viscy_utils.evaluation.metrics:VOI_metric": "target, prediction",
    "viscy_utils.evaluation.metrics:POD_metric": "target_bin, pred_bin",
    "viscy_utils.evaluation.metrics:labels_to_masks": "labels",
    "viscy_utils.evaluation.metrics:labels_to_detection": "labels",
    "viscy_utils.evaluation.metrics:mean_average_precision": "pred_labels, target_labels, **kwargs",
    "viscy_utils.evaluation.metrics:ssim_25d": "preds, target, in_plane_window_size=(11, 11), "
    "return_contrast_sensitivity=False",
    "viscy_utils.evaluation.metrics:ms_ssim_25d": "preds, target, in_plane_window_size=(11, 11), clamp=False, "
    "betas=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)",
    "viscy_utils.evaluation.lca:fit_logistic_regression": "features, annotations, train_fovs=None, train_ratio=0.8, "
    "remove_background_class=True, scale_features=False, class_weight='balanced', random_state=None, "
    "solver='liblinear'",
    "viscy_utils.evaluation.lca:AssembledClassifier": "backbone, classifier",
    "viscy_utils.evaluation.lca:AssembledClassifier.forward": "x, scale_features=False",
    "viscy_utils.evaluation.feature:CellFeatures": "image, segmentation_mask=None",
    "viscy_utils.evaluation.feature:DynamicFeatures": "tracking_df",
    "viscy_utils.evaluation.visualization:EmbeddingVisualizationApp": "data_path, tracks_path, features_path, "
    "channels_to_display, fov_tracks, z_range=(0, 1), yx_patch_size=(128, 128), num_PC_components=3, "
    "cache_path=None, num_loading_workers=16, output_dir=None",
    "viscy_utils.evaluation.visualization:EmbeddingVisualizationApp.save_cache": "cache_path=None",
    "viscy_utils.evaluation.visualization:EmbeddingVisualizationApp.load_cache": "cache_path=None",
    "viscy_utils.evaluation.visualization:EmbeddingVisualizationApp.save_clusters_to_csv": "output_path=None",
    "viscy_utils.evaluation.visualization:EmbeddingVisualizationApp.run": "debug=False, port=None",
    "viscy_utils.evaluation.linear_classifier:LinearClassifierPipeline": "classifier, scaler, pca, config, task",
    "viscy_utils.evaluation.linear_classifier:load_and_combine_datasets": "datasets, task",
    "viscy_utils.evaluation.linear_classifier:train_linear_classifier": "adata, task, use_scaling=True, "
    "use_pca=False, n_pca_components=None, classifier_params=None, split_train_data=0.8, random_seed=42",
    "viscy_utils.evaluation.linear_classifier:predict_with_classifier": "adata, pipeline, task, "
    "artifact_metadata=None, include_wells=None",
    "viscy_utils.evaluation.linear_classifier:save_pipeline_to_wandb": "pipeline, metrics, config, wandb_project, "
    "wandb_entity=None, tags=None",
    "viscy_utils.evaluation.linear_classifier:load_pipeline_from_wandb": "wandb_project, model_name, "
    "version='latest', wandb_entity=None",
}


def _resolve(target: str):
    module, _, qualname = target.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _render(obj) -> str:
    parts = []
    for p in inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = tuple(p.default) if isinstance(p.default, list) else p.default
            parts.append(f"{p.name}={default!r}")
    return ", ".join(parts)


@pytest.mark.parametrize("target", sorted(SIGNATURES))
def test_signature(target):
    assert _render(_resolve(target)) == SIGNATURES[target]


def test_module_map():
    import viscy_utils
    from viscy_utils import callbacks, evaluation

    assert sorted(viscy_utils.__all__) == sorted(
        ["detach_sample", "render_images", "get_val_stats", "mp_wrapper", "hist_clipping", "unzscore", "zscore"]
    )
    assert callbacks.EmbeddingWriter is _resolve("viscy_utils.callbacks.embedding_writer:EmbeddingWriter")
    assert evaluation.__all__ == ["load_annotation_anndata"]
    assert callable(_resolve("viscy_utils.cli:main"))
    assert _resolve("viscy_utils.cli:VisCyCLI").__name__ == "VisCyCLI"
    assert callable(_resolve("viscy_utils.evaluation.lca:linear_from_binary_logistic_regression"))
    for name in (
        "IntensityFeatures TextureFeatures MorphologyFeatures SymmetryDescriptor TrackFeatures DisplacementFeatures "
        "AngularFeatures"
    ).split():
        assert hasattr(_resolve(f"viscy_utils.evaluation.feature:{name}"), "__annotations__")


def test_linear_classifier_config_fields():
    from viscy_utils.evaluation.linear_classifier_config import (
        LinearClassifierInferenceConfig,
        LinearClassifierTrainConfig,
    )

    train = LinearClassifierTrainConfig.model_fields
    assert list(train) == [
        "task",
        "input_channel",
        "marker",
        "embedding_model",
        "train_datasets",
        "use_scaling",
        "use_pca",
        "n_pca_components",
        "max_iter",
        "class_weight",
        "solver",
        "split_train_data",
        "random_seed",
        "wandb_project",
        "wandb_entity",
        "wandb_tags",
    ]
    defaults = {k: v.default for k, v in train.items() if not v.is_required() and v.default_factory is None}
    assert defaults == {
        "marker": None,
        "use_scaling": True,
        "use_pca": False,
        "n_pca_components": None,
        "max_iter": 1000,
        "class_weight": "balanced",
        "solver": "liblinear",
        "split_train_data": 0.8,
        "random_seed": 42,
        "wandb_entity": None,
    }
    assert train["wandb_tags"].default_factory() == []
    inference = LinearClassifierInferenceConfig.model_fields
    assert list(inference) == [
        "wandb_project",
        "model_name",
        "version",
        "wandb_entity",
        "embeddings_path",
        "output_path",
        "include_wells",
        "overwrite",
    ]
    assert {k: v.default for k, v in inference.items() if not v.is_required()} == {
        "version": "latest",
        "wandb_entity": None,
        "output_path": None,
        "include_wells": None,
        "overwrite": False,
    }


def test_cli_subcommands():
    from viscy_utils._lightning_cli import VisCyCLI

    assert set(VisCyCLI.subcommands()) >= {
        "fit",
        "validate",
        "test",
        "predict",
        "preprocess",
        "export",
        "precompute",
        "convert_to_anndata",
    }
    for extra in ("preprocess", "export", "precompute", "convert_to_anndata"):
        assert VisCyCLI.subcommands()[extra] == {"model"}
