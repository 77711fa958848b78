"""Lightning DataModule for cross-experiment contrastive training and prediction."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from monai.data import ThreadDataLoader
from monai.transforms import MapTransform
from torch.utils.data import BatchSampler, DistributedSampler, SequentialSampler

from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex
from dynaclr.problems import CheckReport
from viscy_data.channel_dropout import ChannelDropout
from viscy_data.device_transforms import DeviceTransformMixin, DeviceTransforms
from viscy_data.loading import thread_worker_loader
from viscy_data.sampler import FlexibleBatchSampler

__all__ = ["MultiExperimentDataModule"]

_logger = logging.getLogger(__name__)


def _identity(batch: Any) -> Any:
    return batch


class _EpochFollowingBatchSampler(FlexibleBatchSampler):
    """FlexibleBatchSampler that takes the trainer's epoch each time an epoch starts iterating.

    Lightning calls ``set_epoch`` only on plain samplers, never on a custom batch sampler; the
    loader re-creates its iterator every epoch, so reading the epoch here reaches every epoch.
    """

    def __init__(self, *args, datamodule: MultiExperimentDataModule, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._datamodule = datamodule

    def __iter__(self):
        trainer = self._datamodule.trainer
        if trainer is not None:
            self.set_epoch(trainer.current_epoch)
            self._datamodule.train_dataset.set_epoch(trainer.current_epoch)
        return super().__iter__()


class MultiExperimentDataModule(DeviceTransformMixin, LightningDataModule):
    """Anchors/positives from several experiments with composable batch sampling.

    Parameters
    ----------
    experiments_yaml : str
        Experiments file for :meth:`ExperimentRegistry.from_yaml` (``experiments_file`` is an alias).
    z_range : tuple[int, int]
        (start, stop) Z planes. Required.
    yx_patch_size : tuple[int, int]
        Patch size read from the stores. Required.
    final_yx_patch_size : tuple[int, int]
        Patch size after the centre crop that ends the GPU pipeline. Required.
    val_experiments : list[str] or None
        Experiments used for validation (whole experiments; the rest train). None or ``[]``: no
        validation split (a warning at ``setup("fit")``; a predict-only configuration needs none).
    tau_range : tuple[float, float]
        Anchor-positive offsets in hours (``tau = 0`` is never drawn).
    tau_decay_rate : float
        Decay of the offset distribution.
    batch_size : int
        Anchors per batch.
    num_workers : int
        Thread workers of the loaders.
    experiment_aware, condition_balanced, leaky, temporal_enrichment, temporal_window_hours, \
temporal_global_fraction, experiment_weights, condition_ratio
        Sampling axes, see :class:`viscy_data.sampler.FlexibleBatchSampler`.
    channel_dropout_channels : list[int] or None
        Input positions that channel dropout may blank. None: ``[1]`` (the second, fluorescence
        channel) when the experiments have two or more source channels, none with a single channel.
        Positions beyond the source channels fail at ``setup``.
    channel_dropout_prob : float
        Probability of channel dropout, applied to training batches only.
    normalizations, augmentations : list[MapTransform] or None
        Batched dictionary transforms on generic channel keys ``ch_0 ... ch_<n-1>``; training uses
        normalizations + augmentations, validation and prediction only normalizations.
    hcl_beta : float
        The hard-negative concentration the configuration expects. The loss owns the value
        (``NTXentHCL(beta=...)`` on the model); at ``setup`` a model whose loss has a different
        ``beta`` gets a warning naming both, so the two settings cannot silently disagree.
    cache_pool_bytes : int
        Tensorstore chunk cache size.
    seed : int
        Seed of batches and positives.
    include_wells, exclude_fovs : list[str] or None
        Observation filters.
    predict_experiments : list[str] or None
        Experiments embedded by ``predict`` (None: all), every observation, in index order.
    index_cache_dir : str or None
        Directory for the saved index (see :class:`~dynaclr.index.MultiExperimentIndex`).
    experiments_file : str or None
        Alias of ``experiments_yaml``.
    same_frame_positives : bool, default False
        The time-agnostic ablation of DynaCLR (SimCLR-style): every anchor is its own positive, the same
        frame under independent augmentations. Anchors, batches, augmentations and random draws stay those
        of ``tau_range``, so a model trained with it differs from DynaCLR only in its positives.

    Notes
    -----
    Use ``use_distributed_sampler: false`` in the trainer: ranks and world size are read from the
    trainer and every rank gets the same number of disjoint batches.

    When the model's loss takes explicit negatives (``model.uses_ntxent`` is False, e.g.
    ``TripletMarginLoss``), training and validation batches carry a ``negative`` too (see
    :class:`~dynaclr.dataset.MultiExperimentTripletDataset`).

    Arguments that do not fit the data fail before training, all at once, each naming the argument,
    experiment and file: :meth:`preflight_check` (run by the ``dynaclr`` command before anything is
    written, and by :meth:`setup` otherwise) applies every rule of ``dynaclr check``, e.g.
    ``final_yx_patch_size`` larger than ``yx_patch_size``, ``channel_dropout_channels`` beyond the
    source channels, transforms keyed on missing channels, fewer valid anchors than ``batch_size``, or a
    ``tau_range`` that leaves no anchor with a positive.
    """

    def __init__(
        self,
        experiments_yaml: str | None = None,
        z_range: tuple[int, int] | None = None,
        yx_patch_size: tuple[int, int] | None = None,
        final_yx_patch_size: tuple[int, int] | None = None,
        val_experiments: list[str] | None = None,
        tau_range: tuple[float, float] = (0.5, 2.0),
        tau_decay_rate: float = 2.0,
        batch_size: int = 128,
        num_workers: int = 1,
        experiment_aware: bool = True,
        condition_balanced: bool = True,
        leaky: float = 0.0,
        temporal_enrichment: bool = False,
        temporal_window_hours: float = 2.0,
        temporal_global_fraction: float = 0.3,
        experiment_weights: dict[str, float] | None = None,
        condition_ratio: dict[str, float] | None = None,
        channel_dropout_channels: list[int] | None = None,
        channel_dropout_prob: float = 0.5,
        normalizations: list[MapTransform] | None = None,
        augmentations: list[MapTransform] | None = None,
        hcl_beta: float = 0.5,
        cache_pool_bytes: int = 0,
        seed: int = 0,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        predict_experiments: list[str] | None = None,
        index_cache_dir: str | None = None,
        experiments_file: str | None = None,
        same_frame_positives: bool = False,
    ) -> None:
        super().__init__()
        if experiments_yaml is None:
            experiments_yaml = experiments_file
        if experiments_yaml is None:
            raise ValueError("MultiExperimentDataModule needs experiments_yaml (or its alias experiments_file)")
        # required (they default to None only so that experiments_yaml can have its alias): no patch geometry
        # fits every plate, so a missing one fails here instead of training on a guessed Z range or patch
        required = {"z_range": z_range, "yx_patch_size": yx_patch_size, "final_yx_patch_size": final_yx_patch_size}
        missing = [name for name, value in required.items() if value is None]
        if missing:
            raise ValueError(
                f"MultiExperimentDataModule needs {', '.join(missing)}: z_range as (start, stop) Z planes, "
                "yx_patch_size as the (Y, X) patch read around each cell, final_yx_patch_size as the (Y, X) size "
                "after the centre crop"
            )
        self.experiments_yaml = str(experiments_yaml)
        self.experiments_file = self.experiments_yaml
        self.z_range = tuple(z_range)
        self.yx_patch_size = tuple(yx_patch_size)
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.val_experiments = list(val_experiments or [])
        self.tau_range = tuple(tau_range)
        self.same_frame_positives = bool(same_frame_positives)
        self.tau_decay_rate = tau_decay_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.experiment_aware = experiment_aware
        self.condition_balanced = condition_balanced
        self.leaky = leaky
        self.temporal_enrichment = temporal_enrichment
        self.temporal_window_hours = temporal_window_hours
        self.temporal_global_fraction = temporal_global_fraction
        self.experiment_weights = experiment_weights
        self.condition_ratio = condition_ratio
        # None adapts to the number of source channels at setup (see resolved_dropout_channels)
        self._default_dropout_channels = channel_dropout_channels is None
        self.channel_dropout_channels = [1] if channel_dropout_channels is None else list(channel_dropout_channels)
        self.channel_dropout_prob = channel_dropout_prob
        self.normalizations = list(normalizations or [])
        self.augmentations = list(augmentations or [])
        self.hcl_beta = hcl_beta
        self.cache_pool_bytes = cache_pool_bytes
        self.seed = seed
        self.include_wells = include_wells
        self.exclude_fovs = exclude_fovs
        self.predict_experiments = predict_experiments
        self.index_cache_dir = index_cache_dir
        self.channel_dropout = ChannelDropout(self.channel_dropout_channels, self.channel_dropout_prob)
        self.train_dataset: MultiExperimentTripletDataset | None = None
        self.val_dataset: MultiExperimentTripletDataset | None = None
        self.predict_dataset: MultiExperimentTripletDataset | None = None
        self.device_transforms: DeviceTransforms | None = None
        # indices built by preflight_check, keyed by experiment names, handed to setup once
        self._prebuilt_indices: dict[tuple[str, ...], MultiExperimentIndex] = {}
        self._checked_stage: str | None = None  # the stage preflight_check last passed for

    # ------------------------------------------------------------------ setup
    def _subset(self, registry: ExperimentRegistry, names: Sequence[str]) -> ExperimentRegistry:
        return ExperimentRegistry(
            [e for e in registry.experiments if e.name in set(names)],
            zero_fill_missing_channels=registry.zero_fill_missing_channels,
        )

    def _model(self) -> Any:
        trainer = self.trainer
        return getattr(trainer, "lightning_module", None) if trainer is not None else None

    def _needs_negatives(self) -> bool:
        """Whether the attached model's loss takes explicit negatives (not NT-Xent)."""
        return getattr(self._model(), "uses_ntxent", True) is False

    def _check_hcl_beta(self) -> None:
        loss = getattr(self._model(), "loss_function", None)
        beta = getattr(loss, "beta", None)
        if isinstance(beta, (int, float)) and not math.isclose(float(beta), float(self.hcl_beta)):
            warnings.warn(
                f"data.hcl_beta={self.hcl_beta} differs from the model's loss {type(loss).__name__}(beta={beta}); "
                "the loss's beta is used. Set the same value in both places (model.loss_function beta).",
                UserWarning,
                stacklevel=2,
            )

    def resolved_dropout_channels(self, n_channels: int) -> list[int]:
        """Input positions channel dropout blanks with ``n_channels`` source channels.

        ``channel_dropout_channels`` as given, or for the default (None) ``[1]`` with two or more source
        channels and none with one. Whether the positions exist is checked by :meth:`preflight_check`.
        """
        if self._default_dropout_channels:
            return [1] if n_channels >= 2 else []
        return list(self.channel_dropout_channels)

    def build_index(self, registry: ExperimentRegistry, use_cache: bool = True) -> MultiExperimentIndex:
        """Index the observations of ``registry``'s experiments with this data module's arguments.

        Parameters
        ----------
        registry : ExperimentRegistry
            The experiments.
        use_cache : bool
            Read and write ``index_cache_dir`` (when set); False builds from the tracking CSVs and writes nothing.

        Returns
        -------
        MultiExperimentIndex
        """
        return MultiExperimentIndex(
            registry,
            slice(*self.z_range),
            self.yx_patch_size,
            tau_range_hours=self.tau_range,
            include_wells=self.include_wells,
            exclude_fovs=self.exclude_fovs,
            cache_dir=self.index_cache_dir if use_cache else None,
            same_frame_positives=self.same_frame_positives,
        )

    def preflight_check(self, stage: str = "fit", world_size: int = 1, model: Any = None) -> CheckReport:
        """Check the arguments and every experiment before a run writes anything (``dynaclr check``'s checks).

        The ``dynaclr``/``viscy`` command calls this before ``fit``, ``validate`` and ``predict``, before logs,
        checkpoints or ``config.yaml`` exist. Warnings are logged; the indices built for the check are kept and
        reused by :meth:`setup`, so checking costs no second index build.

        Parameters
        ----------
        stage : str
            ``"fit"``, ``"validate"`` or ``"predict"`` (other stages are not checked).
        world_size : int
            Number of processes that will share the training batches.
        model : torch.nn.Module, optional
            The model of the run: its ``in_channels``/``in_stack_depth`` must match the source channels and
            ``z_range``.

        Returns
        -------
        CheckReport
            Warnings only.

        Raises
        ------
        ConfigCheckError
            Listing every error found (see :func:`dynaclr.check.check_datamodule`).

        Notes
        -----
        :meth:`setup` runs this check itself when it has not passed for the stage yet, so the rules live in
        one place (:mod:`dynaclr.check` and :mod:`viscy_data.checks`) whether the data module is used from
        the command line or from Python.
        """
        from dynaclr.check import check_datamodule

        self._checked_stage = None
        report = check_datamodule(self, stage, world_size=world_size, keep_indices=True, model=model)
        for problem in report.warnings:
            _logger.warning("%s", problem.describe())
        report.raise_for_errors()
        self._checked_stage = stage
        return report

    def _dataset(self, registry: ExperimentRegistry, fit: bool) -> MultiExperimentTripletDataset:
        prebuilt = self._prebuilt_indices.pop(tuple(e.name for e in registry.experiments), None)
        index = prebuilt if prebuilt is not None else self.build_index(registry)
        return MultiExperimentTripletDataset(
            index,
            fit=fit,
            tau_range_hours=self.tau_range if fit else None,
            tau_decay_rate=self.tau_decay_rate,
            return_negative=fit and self._needs_negatives(),
            cache_pool_bytes=self.cache_pool_bytes,
            seed=self.seed,
        )

    def _build_transforms(self, n_channels: int) -> None:
        self.device_transforms = DeviceTransforms(
            [f"ch_{i}" for i in range(n_channels)],
            self.normalizations,
            self.augmentations,
            final_size=(-1, *self.final_yx_patch_size),
        )

    def setup(self, stage: str | None = None) -> None:
        """Check (see :meth:`preflight_check`), then build indices and datasets for ``fit``/``validate``/``predict``.

        Raises
        ------
        ConfigCheckError
            Listing every problem of the arguments and the experiments, when the check had not passed yet.
        """
        check_stage = "fit" if stage is None else stage
        if check_stage not in ("fit", "validate", "predict"):
            return
        if self._checked_stage != check_stage:
            self.preflight_check(check_stage, world_size=self._rank_world()[1], model=self._model())
        self._checked_stage = None  # a later setup checks again: plates and files may have changed
        registry = ExperimentRegistry.from_yaml(self.experiments_yaml)
        names = [e.name for e in registry.experiments]
        self._build_transforms(registry.num_source_channels)
        if stage == "predict":
            chosen = self.predict_experiments or names
            self.predict_dataset = self._dataset(self._subset(registry, chosen), fit=False)
            return
        train_names = [n for n in names if n not in self.val_experiments]
        self.channel_dropout_channels = self.resolved_dropout_channels(registry.num_source_channels)
        self.channel_dropout.channels = list(self.channel_dropout_channels)
        self._check_hcl_beta()
        self.train_dataset = self._dataset(self._subset(registry, train_names), fit=True)
        self.train_dataset.rank = self._rank_world()[0]
        if self.val_experiments:
            self.val_dataset = self._dataset(self._subset(registry, self.val_experiments), fit=True)
        else:
            _logger.warning("No val_experiments: validation is disabled")
        _logger.info(
            "MultiExperimentDataModule: %d train experiments (%d anchors), %d val experiments (%d anchors)",
            len(train_names),
            len(self.train_dataset),
            len(self.val_experiments),
            0 if self.val_dataset is None else len(self.val_dataset),
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset, batch_sampler) -> ThreadDataLoader:
        return thread_worker_loader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            collate_fn=_identity,
        )

    def train_dataloader(self) -> ThreadDataLoader:
        """Batches from :class:`FlexibleBatchSampler`, sharded across ranks, new order every epoch."""
        rank, world = self._rank_world()
        sampler = _EpochFollowingBatchSampler(
            self.train_dataset.index.valid_anchors,
            batch_size=self.batch_size,
            experiment_aware=self.experiment_aware,
            leaky=self.leaky,
            experiment_weights=self.experiment_weights,
            condition_balanced=self.condition_balanced,
            condition_ratio=self.condition_ratio,
            temporal_enrichment=self.temporal_enrichment,
            temporal_window_hours=self.temporal_window_hours,
            temporal_global_fraction=self.temporal_global_fraction,
            num_replicas=world,
            rank=rank,
            seed=self.seed,
            drop_last=True,
            datamodule=self,
        )
        return self._loader(self.train_dataset, sampler)

    def _sequential(self, dataset) -> BatchSampler:
        rank, world = self._rank_world()
        if world > 1:
            # equal-length shards (padded by wrap-around) so no rank waits in a collective
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False, drop_last=False)
        else:
            sampler = SequentialSampler(dataset)
        return BatchSampler(sampler, batch_size=self.batch_size, drop_last=False)

    def val_dataloader(self) -> ThreadDataLoader | list:
        """Sequential validation batches (fixed positives), sharded across ranks; [] without val data."""
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self._sequential(self.val_dataset))

    def predict_dataloader(self) -> ThreadDataLoader:
        """Every observation of the predicted experiments, in order, with ``index`` metadata."""
        return self._loader(self.predict_dataset, self._sequential(self.predict_dataset))

    # ------------------------------------------------------------------ device transforms
    #: without a trainer batches are treated as validation batches (no augmentation, no dropout)
    stage_without_trainer = "validate"

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise, augment (training only), centre-crop, then channel-drop (training only)."""
        if self.device_transforms is None and isinstance(batch, dict) and "anchor" in batch:
            self._build_transforms(batch["anchor"].shape[1])  # transferred before setup()
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def after_device_transforms(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        """Channel dropout on ``anchor`` and ``positive`` of training batches."""
        if stage == "train":
            self.channel_dropout.train()
            for key in ("anchor", "positive"):
                if key in batch:
                    batch[key] = self.channel_dropout(batch[key])
        return batch
