"""The public surface of dynaclr as the spec states it: class paths and ``init_args`` of users' YAML configs.

Names, order and defaults are contract. Deliberate differences from the spec text are noted in the table
(the spec's FIX / weak-spot rows license them); additions are trailing, defaulted arguments.
"""

import dataclasses
import importlib
import inspect

import pytest

import dynaclr

# "module:qualname" -> arguments. Deliberate differences:
# - ``loss_function=None`` / ``loss=None``: a fresh default loss per instance (W14: shared mutable default);
#   ContrastiveModule builds TripletMarginLoss(margin=0.5), BetaVaeModule MSELoss(reduction="sum"),
#   JointContrastiveModule NTXentLoss (W16: the reference default cannot run), ClassificationModule
#   BCEWithLogitsLoss(pos_weight=1.0);
# - MultiExperimentDataModule: ``experiments_yaml`` defaults to None for its alias ``experiments_file``, so the
#   required geometry (z_range, yx_patch_size, final_yx_patch_size) is None-defaulted and checked at
#   construction; ``val_experiments=None`` = no validation (predict configs, W13); ``channel_dropout_channels``
#   None adapts to the number of source channels (issue 15: defaults that fit the data); trailing
#   ``predict_experiments``, ``index_cache_dir`` (W13 predict, W11 index build), ``experiments_file`` (alias);
# - MultiExperimentTripletDataset ``seed`` (W10), MultiExperimentIndex ``cache_dir`` (W11),
#   ExperimentRegistry ``zero_fill_missing_channels``, LazyCommand ``extra`` (W17: name the extra to install).
SIGNATURES = {
    "dynaclr.engine:ContrastiveModule": "encoder, loss_function=None, lr=0.001, schedule='Constant', "
    "log_batches_per_epoch=8, log_samples_per_batch=1, log_embeddings=False, log_negative_metrics_every_n_epochs=2, "
    "example_input_array_shape=(1, 2, 15, 256, 256), ckpt_path=None",
    "dynaclr.engine:ContrastiveModule.forward": "x",
    "dynaclr.engine:ContrastiveModule.log_embedding_umap": "embeddings, tag",
    "dynaclr.engine:ContrastiveModule.log_feature_statistics": "embeddings, prefix",
    "dynaclr.engine:ContrastiveModule.print_embedding_norms": "anchor, positive, negative, phase",
    "dynaclr.engine:BetaVaeModule": "vae, loss_function=None, beta=1.0, beta_schedule=None, beta_min=0.1, "
    "beta_warmup_epochs=50, lr=1e-05, lr_schedule='Constant', log_batches_per_epoch=8, log_samples_per_batch=1, "
    "example_input_array_shape=(1, 2, 30, 256, 256), log_enhanced_visualizations=False, "
    "log_enhanced_visualizations_frequency=30",
    "dynaclr.vae_logging:BetaVaeLogger": "latent_dim=128",
    "dynaclr.vae_logging:BetaVaeLogger.setup": "device",
    "dynaclr.vae_logging:BetaVaeLogger.log_enhanced_metrics": "lightning_module, model_output, batch, stage='train'",
    "dynaclr.vae_logging:BetaVaeLogger.log_latent_traversal": "lightning_module, n_dims=8, n_steps=11, "
    "range_vals=(-3, 3)",
    "dynaclr.vae_logging:BetaVaeLogger.log_latent_interpolation": "lightning_module, n_pairs=3, n_steps=11",
    "dynaclr.vae_logging:BetaVaeLogger.log_factor_traversal_matrix": "lightning_module, n_dims=8, n_steps=7",
    "dynaclr.vae_logging:BetaVaeLogger.log_beta_schedule": "lightning_module, beta_schedule=None",
    "dynaclr.multi_modal:JointEncoders": "source_encoder, target_encoder",
    "dynaclr.multi_modal:JointEncoders.forward": "source, target",
    "dynaclr.multi_modal:JointEncoders.forward_features": "source, target",
    "dynaclr.multi_modal:JointEncoders.forward_projections": "source, target",
    "dynaclr.multi_modal:JointContrastiveModule": "encoder, loss_function=None, lr=0.001, schedule='Constant', "
    "log_batches_per_epoch=8, log_samples_per_batch=1, log_embeddings=False, embedding_log_frequency=10, "
    "example_input_array_shape=(1, 2, 15, 256, 256), prediction_arm='source'",
    "dynaclr.classification:ClassificationModule": "encoder, lr, loss=None, "
    "example_input_array_shape=(2, 1, 15, 160, 160)",
    "dynaclr.classification:ClassificationPredictionWriter": "output_path",
    "dynaclr.experiment:ExperimentRegistry.from_yaml": "path",
    "dynaclr.experiment:ExperimentRegistry.tau_range_frames": "experiment_name, tau_range_hours",
    "dynaclr.experiment:ExperimentRegistry.get_experiment": "name",
    "dynaclr.index:MultiExperimentIndex": "registry, z_range, yx_patch_size, tau_range_hours=(0.5, 2.0), "
    "include_wells=None, exclude_fovs=None, cache_dir=None, same_frame_positives=False",
    "dynaclr.dataset:MultiExperimentTripletDataset": "index, fit=True, tau_range_hours=(0.5, 2.0), "
    "tau_decay_rate=2.0, return_negative=False, cache_pool_bytes=0, seed=0",
    "dynaclr.datamodule:MultiExperimentDataModule": "experiments_yaml=None, z_range=None, yx_patch_size=None, "
    "final_yx_patch_size=None, val_experiments=None, tau_range=(0.5, 2.0), tau_decay_rate=2.0, batch_size=128, "
    "num_workers=1, experiment_aware=True, condition_balanced=True, leaky=0.0, temporal_enrichment=False, "
    "temporal_window_hours=2.0, temporal_global_fraction=0.3, experiment_weights=None, condition_ratio=None, "
    "channel_dropout_channels=None, channel_dropout_prob=0.5, normalizations=None, augmentations=None, "
    "hcl_beta=0.5, cache_pool_bytes=0, seed=0, include_wells=None, exclude_fovs=None, predict_experiments=None, "
    "index_cache_dir=None, experiments_file=None, same_frame_positives=False",
    "dynaclr.loss:NTXentHCL": "temperature=0.07, beta=0.5, **kwargs",
    "dynaclr.tau_sampling:sample_tau": "tau_min, tau_max, rng, decay_rate=2.0",
    "dynaclr.cli:LazyCommand": "name, import_path, help=None, short_help=None, extra='pip install \"dynaclr[eval]\"'",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:discover_predictions": "embeddings_dir, model_name, "
    "version",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:find_channel_zarrs": "predictions_dir, channels=None",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:find_annotation_csv": "annotations_dir, dataset_name",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:get_available_tasks": "csv_path",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:build_registry": "embeddings_dir, annotations_dir, "
    "model_name, version",
    "dynaclr.evaluation.linear_classifiers.dataset_discovery:print_registry_summary": "registry, skipped, "
    "annotations_only, predictions_only",
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


def test_package_exports_and_module_map():
    assert sorted(dynaclr.__all__) == sorted(
        [
            "BetaVaeModule",
            "ContrastiveModule",
            "ContrastivePrediction",
            "ExperimentConfig",
            "ExperimentRegistry",
            "MultiExperimentDataModule",
            "MultiExperimentIndex",
            "MultiExperimentTripletDataset",
            "NTXentHCL",
            "sample_tau",
        ]
    )
    modules = {
        "dynaclr.engine": "ContrastiveModule ContrastivePrediction BetaVaeModule",
        "dynaclr.vae_logging": "BetaVaeLogger",
        "dynaclr.multi_modal": "JointEncoders JointContrastiveModule MultiModalContrastiveModule",
        "dynaclr.classification": "ClassificationModule ClassificationPredictionWriter",
        "dynaclr.experiment": "ExperimentConfig ExperimentRegistry",
        "dynaclr.index": "MultiExperimentIndex",
        "dynaclr.dataset": "MultiExperimentTripletDataset",
        "dynaclr.datamodule": "MultiExperimentDataModule",
        "dynaclr.loss": "NTXentHCL",
        "dynaclr.tau_sampling": "sample_tau",
        "dynaclr.cli": "LazyCommand dynaclr main",
    }
    for module, names in modules.items():
        for name in names.split():
            assert getattr(importlib.import_module(module), name) is not None, f"{module}.{name}"
    for name in dynaclr.__all__:
        assert getattr(dynaclr, name) is not None
    from dynaclr.multi_modal import JointContrastiveModule, MultiModalContrastiveModule

    assert issubclass(MultiModalContrastiveModule, JointContrastiveModule)
    assert set(dynaclr.ContrastivePrediction.__annotations__) == {"features", "projections", "index"}


def test_experiment_config_fields():
    fields = [
        (f.name, f.default if f.default is not dataclasses.MISSING else "required")
        for f in dataclasses.fields(dynaclr.ExperimentConfig)
    ]
    assert fields == [
        ("name", "required"),
        ("data_path", "required"),
        ("tracks_path", "required"),
        ("channel_names", "required"),
        ("source_channel", "required"),
        ("condition_wells", "required"),
        ("interval_minutes", 30.0),
        ("start_hpi", 0.0),
        ("organelle", ""),
        ("date", ""),
        ("moi", 0.0),
    ]
    registry_fields = [f.name for f in dataclasses.fields(dynaclr.ExperimentRegistry)]
    assert registry_fields[0] == "experiments"
    assert {"num_source_channels", "channel_maps"} <= set(registry_fields)


def test_dataset_discovery_constants():
    from dynaclr.evaluation.linear_classifiers import dataset_discovery

    assert dataset_discovery.CHANNELS == ["phase", "sensor", "organelle"]
    assert dataset_discovery.TASKS == ["infection_state", "organelle_state", "cell_division_state", "cell_death_state"]


def test_cli_subcommands():
    from dynaclr.cli import dynaclr as group

    assert {
        "train-linear-classifier",
        "apply-linear-classifier",
        "fit",
        "validate",
        "test",
        "predict",
        "export",
        "preprocess",
        "precompute",
        "convert_to_anndata",
    } <= set(group.commands)
