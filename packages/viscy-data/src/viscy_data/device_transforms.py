"""Transforms of whole batches on their device: one path for every DataModule that reads patches.

Patch datasets (``TripletDataset``, ``dynaclr``'s ``MultiExperimentTripletDataset``) return batches of
raw ``(B, C, Z, Y, X)`` patches under image keys (``anchor``, ``positive``, ``negative``) with one
statistics dict per sample under ``<key>_norm_meta``. Once Lightning has moved a batch to the device,
:class:`DeviceTransformMixin` runs, for each image key:

1. scatter the channels to one ``(B, 1, Z, Y, X)`` entry per channel key (the keys the configured
   transforms name) and collate the samples' statistics into ``norm_meta``
   (:func:`~viscy_data.norm_meta.collate_norm_meta`);
2. the normalisations, then the augmentations (when the DataModule says the key is augmented at this
   stage; training by default);
3. a centre crop of every channel to the final patch size, and gather the channels back into
   ``(B, C, Z', Y', X')``.

DataModules differ only in what is specific to them, through :meth:`DeviceTransformMixin.augments` and
:meth:`DeviceTransformMixin.after_device_transforms`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import Compose, MapTransform
from torch import Tensor

from viscy_data.checks import transform_key_problems
from viscy_data.norm_meta import collate_norm_meta

__all__ = [
    "BatchedCenterSpatialCropd",
    "DeviceTransformMixin",
    "DeviceTransforms",
    "center_crop_slices",
    "gather_channels",
    "scatter_channels",
    "transform_channel_wise",
]

#: batch keys of patch tensors, each optionally with ``<key>_norm_meta``
IMAGE_KEYS = ("anchor", "positive", "negative")


def center_crop_slices(spatial_shape: Sequence[int], roi_size: Sequence[int | None]) -> tuple[slice, ...]:
    """Slices of a centre crop, with MONAI ``CenterSpatialCrop`` semantics.

    Non-positive (or ``None``) ROI entries keep the whole axis; the window starts at
    ``size // 2 - roi // 2`` (clipped at 0), so odd/even rounding matches MONAI exactly.
    """
    if len(roi_size) != len(spatial_shape):
        raise ValueError(f"roi_size {tuple(roi_size)} has {len(roi_size)} axes, the data has {len(spatial_shape)}")
    slices = []
    for size, roi in zip(spatial_shape, roi_size):
        roi = size if roi is None or roi <= 0 else int(roi)
        start = max(size // 2 - roi // 2, 0)
        slices.append(slice(start, min(start + roi, size)))
    return tuple(slices)


class BatchedCenterSpatialCropd(MapTransform):
    """Centre-crop the spatial axes of batched ``(B, C, *spatial)`` tensors.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the tensors to crop.
    roi_size : int or sequence of int
        Output spatial size; an int applies to every spatial axis, non-positive entries keep the axis.
    allow_missing_keys : bool, default False
        Do not raise if a key is absent.
    """

    def __init__(self, keys: str | Sequence[str], roi_size: int | Sequence[int], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.roi_size = roi_size

    def __call__(self, data: dict[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Return a shallow copy of ``data`` with the selected tensors cropped (views, no copy)."""
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            spatial = image.shape[2:]
            roi = [self.roi_size] * len(spatial) if isinstance(self.roi_size, int) else list(self.roi_size)
            d[key] = image[(slice(None), slice(None), *center_crop_slices(spatial, roi))]
        return d


def scatter_channels(
    channel_keys: Sequence[str], patch: Tensor, norm_meta: Sequence[dict | None] | dict | None
) -> dict[str, Tensor | dict]:
    """Split ``(B, C, ...)`` into ``{key: (B, 1, ...)}`` (views) and attach the collated ``norm_meta``.

    ``norm_meta`` may be a list of per-sample dicts (collated here), an already collated dict, or
    ``None`` / a list of ``None`` (then the key is omitted).
    """
    if patch.shape[1] != len(channel_keys):
        raise ValueError(f"patch has {patch.shape[1]} channels but {len(channel_keys)} names: {list(channel_keys)}")
    channels: dict[str, Tensor | dict] = {key: patch[:, i : i + 1] for i, key in enumerate(channel_keys)}
    collated = collate_norm_meta(norm_meta)
    if collated is not None:
        channels["norm_meta"] = collated
    return channels


def gather_channels(patch_channels: dict[str, Tensor | dict]) -> Tensor:
    """Concatenate every value but ``norm_meta`` along dim 1, in dict order."""
    return torch.cat([value for key, value in patch_channels.items() if key != "norm_meta"], dim=1)


def transform_channel_wise(
    transform: Callable[[dict], dict],
    channel_keys: Sequence[str],
    patch: Tensor,
    norm_meta: Sequence[dict | None] | dict | None,
) -> Tensor:
    """Apply a dictionary transform to a ``(B, C, ...)`` patch with one key per channel.

    The transform must return the channel keys (``norm_meta`` and other keys are dropped).
    """
    transformed = transform(scatter_channels(channel_keys, patch, norm_meta))
    return gather_channels({key: transformed[key] for key in channel_keys})


class DeviceTransforms:
    """Normalise, augment and centre-crop ``(B, C, Z, Y, X)`` batches channel by channel.

    Parameters
    ----------
    channel_keys : sequence of str
        Key of each channel, in channel order: the keys the transforms are configured with.
    normalizations : sequence of callable
        Batched dictionary transforms run first, at every stage (e.g. ``NormalizeSampled``).
    augmentations : sequence of callable
        Batched dictionary transforms run after the normalisations when augmenting.
    final_size : sequence of int, optional
        ``(Z, Y, X)`` of the output, centre-cropped with MONAI semantics; non-positive entries keep
        the axis. ``None`` keeps the input size.

    Raises
    ------
    ValueError
        If a transform's ``keys`` name a channel key that does not exist (unless it allows missing
        keys): the message names ``normalizations[i]`` or ``augmentations[i]``.

    Notes
    -----
    The crop comes last, so augmentations that move pixels (rotations, shears) see the margin of the
    larger read. Channels are cropped before they are concatenated: only the final patches are copied.
    Without any transform the batch is cropped in one step, without scattering it.
    """

    def __init__(
        self,
        channel_keys: Sequence[str],
        normalizations: Sequence[Callable] = (),
        augmentations: Sequence[Callable] = (),
        final_size: Sequence[int | None] | None = None,
    ) -> None:
        self.channel_keys = [str(k) for k in channel_keys]
        if not self.channel_keys or len(set(self.channel_keys)) != len(self.channel_keys):
            raise ValueError(f"channel keys must be unique and not empty, got {self.channel_keys}")
        self.normalizations = list(normalizations)
        self.augmentations = list(augmentations)
        for argument in ("normalizations", "augmentations"):
            problems = transform_key_problems(getattr(self, argument), self.channel_keys, argument)
            if problems:
                raise ValueError(problems[0][1])
        self.final_size = None if final_size is None else tuple(final_size)
        if self.final_size is not None and len(self.final_size) != 3:
            raise ValueError(f"final_size must be (Z, Y, X), got {self.final_size}")
        augmenting = [*self.normalizations, *self.augmentations]
        self._pipelines = {
            False: Compose(self.normalizations) if self.normalizations else None,
            True: Compose(augmenting) if augmenting else None,
        }

    def crop(self, images: Tensor) -> Tensor:
        """Centre-crop the last three axes to :attr:`final_size` (a view).

        Raises
        ------
        ValueError
            If the final size exceeds the patch.
        """
        if self.final_size is None:
            return images
        spatial = tuple(images.shape[-3:])
        if any(f is not None and f > s for f, s in zip(self.final_size, spatial)):
            raise ValueError(f"final patch size {self.final_size} (Z, Y, X) exceeds the patch size {spatial}")
        return images[(..., *center_crop_slices(spatial, self.final_size))]

    def __call__(
        self, images: Tensor, norm_meta: Sequence[dict | None] | dict | None = None, augment: bool = False
    ) -> Tensor:
        """Transform a ``(B, C, Z, Y, X)`` batch.

        Parameters
        ----------
        images : Tensor
            The batch, on any device.
        norm_meta : list of dict, dict or None
            Per-sample statistics (collated here) or already collated statistics.
        augment : bool
            Run the augmentations after the normalisations.

        Returns
        -------
        Tensor
            ``(B, C, *final_size)``.
        """
        pipeline = self._pipelines[bool(augment)]
        if pipeline is None:
            return self.crop(images)
        out = pipeline(scatter_channels(self.channel_keys, images, norm_meta))
        return torch.cat([self.crop(out[key]) for key in self.channel_keys], dim=1)


class DeviceTransformMixin:
    """``on_after_batch_transfer`` for LightningDataModules whose batches hold patch tensors.

    Mix it into a ``LightningDataModule`` and set :attr:`device_transforms`. Each image key of a batch
    (:attr:`image_keys` present in the batch) goes through :class:`DeviceTransforms` with its
    ``<key>_norm_meta`` entry, which is removed; augmentations run where :meth:`augments` says so.
    A bare tensor (Lightning's example input) passes unchanged.

    Override :meth:`augments` for the DataModule's augmentation policy,
    :meth:`after_device_transforms` for a last step (e.g. channel dropout), and
    :attr:`stage_without_trainer` for the stage assumed when no trainer is attached.
    """

    #: batch keys holding ``(B, C, Z, Y, X)`` patches
    image_keys: tuple[str, ...] = IMAGE_KEYS
    #: stage assumed by :meth:`batch_stage` without a trainer
    stage_without_trainer: str = "train"
    device_transforms: DeviceTransforms | None = None

    def batch_stage(self) -> str:
        """Return the stage of the batches: ``train``, ``validate`` (incl. sanity check), ``test`` or ``predict``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return self.stage_without_trainer
        for flag, stage in (
            ("predicting", "predict"),
            ("sanity_checking", "validate"),
            ("validating", "validate"),
            ("testing", "test"),
            ("training", "train"),
        ):
            if getattr(trainer, flag, False):
                return stage
        return "validate"

    def augments(self, key: str, stage: str) -> bool:
        """Whether the patches under ``key`` are augmented at ``stage`` (default: training only)."""
        return stage == "train"

    def after_device_transforms(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        """Last step on the transformed batch (default: none)."""
        return batch

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Collate each ``<key>_norm_meta`` list into one dict of ``(B,)`` tensors before the batch moves.

        The datasets return one statistics dict per sample (the documented batch format). Moving them as
        they are means one tiny host-to-device copy per statistic and sample, thousands per batch: on CPU
        Lightning's walk over them cost a third of a small model's training step. Collated, a batch carries a
        few ``(B,)`` tensors per channel; :meth:`on_after_batch_transfer` accepts either form.
        """
        if isinstance(batch, Mapping):
            for key in self.image_keys:
                meta_key = f"{key}_norm_meta"
                if key in batch and isinstance(batch.get(meta_key), (list, tuple)):
                    batch[meta_key] = collate_norm_meta(batch[meta_key])
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise, augment (where :meth:`augments` says so) and centre-crop every image key."""
        if isinstance(batch, Tensor):
            return batch
        transforms = self.device_transforms
        if transforms is None:
            raise RuntimeError(f"{type(self).__name__}.device_transforms is not set; call setup() first")
        stage = self.batch_stage()
        for key in self.image_keys:
            if key in batch:
                norm_meta = batch.pop(f"{key}_norm_meta", None)
                batch[key] = transforms(batch[key], norm_meta, augment=self.augments(key, stage))
        return self.after_device_transforms(batch, stage)
