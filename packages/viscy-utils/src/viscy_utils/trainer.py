"""The Lightning trainer of the ``viscy`` CLI, with extra subcommands.

Each extra method's parameters become the flags of the CLI subcommand of the same name; the first
line of each docstring is the subcommand's help text.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.compile import _maybe_unwrap_optimized

__all__ = ["VisCyTrainer"]

_logger = logging.getLogger("lightning.pytorch")

#: TCZYX axes left free in exported ONNX graphs of 5-D image tensors (depth stays fixed)
_IMAGE_DYNAMIC_AXES = {0: "batch_size", 1: "channels", 3: "num_rows", 4: "num_cols"}


def _dynamic_axes(tensor: torch.Tensor) -> dict[int, str]:
    """Dynamic ONNX axes of one tensor: TCZYX image axes for 5-D tensors, the batch otherwise."""
    return dict(_IMAGE_DYNAMIC_AXES) if tensor.ndim == 5 else {0: "batch_size"}


def _warn_ignored_model(model: LightningModule | None) -> None:
    if model is not None:
        _logger.warning("Ignoring model configuration: this subcommand does not use a model.")


class VisCyTrainer(Trainer):
    """Lightning ``Trainer`` with extra subcommands.

    The extra methods ``preprocess``, ``export``, ``precompute`` and ``convert_to_anndata`` become CLI
    subcommands. All ``Trainer`` constructor arguments are unchanged.
    """

    def preprocess(
        self,
        data_path: Path,
        channel_names: list[str] | Literal[-1] = -1,
        num_workers: int = 1,
        block_size: int = 32,
        model: LightningModule | None = None,
    ) -> None:
        """Compute normalisation statistics of an HCS OME-Zarr store and write them into its attributes.

        Parameters
        ----------
        data_path : pathlib.Path
            HCS OME-Zarr plate.
        channel_names : list of str or -1
            Channels to summarise; -1 for all.
        num_workers : int
            Parallel readers (threads); 0 or less uses every available core.
        block_size : int
            YX sampling grid spacing.
        model : LightningModule, optional
            Ignored (accepted so that a training config can be reused).
        """
        from iohub import open_ome_zarr

        from viscy_utils.meta_utils import generate_normalization_metadata

        _warn_ignored_model(model)
        channel_ids: list[int] | int = -1
        if channel_names != -1:
            with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
                available = list(plate.channel_names)
            unknown = [name for name in channel_names if name not in available]
            if unknown:
                raise ValueError(f"channel(s) {unknown} not in {data_path}; available: {available}")
            channel_ids = [available.index(name) for name in channel_names]
        generate_normalization_metadata(
            zarr_dir=data_path, num_workers=num_workers, channel_ids=channel_ids, grid_spacing=block_size
        )

    def export(
        self,
        model: LightningModule,
        export_path: Path,
        ckpt_path: Path,
        format: str = "onnx",
        output_names: list[str] | None = None,
    ) -> None:
        """Export a model checkpoint to ONNX.

        Parameters
        ----------
        model : LightningModule
            Model whose ``example_input_array`` is the export input sample.
        export_path : pathlib.Path
            Output ``.onnx`` file.
        ckpt_path : pathlib.Path
            Lightning checkpoint whose ``state_dict`` is loaded strictly.
        format : str
            Export format; only ``"onnx"`` (case-insensitive).
        output_names : list of str, optional
            Names of the graph outputs; default ``["output"]`` for a single tensor and
            ``["output_0", "output_1", ...]`` for a tuple of tensors (e.g. features and projections).
        """
        if format.lower() != "onnx":
            raise NotImplementedError(f"Export format '{format}'")
        model = _maybe_unwrap_optimized(model)
        self.strategy.connect(model)
        if model.example_input_array is None:
            raise ValueError(f"{type(model).__name__} needs an example_input_array to be exported")
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        model.eval()
        with torch.no_grad():
            outputs = model(model.example_input_array)
        outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        if output_names is None:
            output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
        if len(output_names) != len(outputs):
            raise ValueError(f"output_names {output_names} do not match the model's {len(outputs)} output(s)")
        dynamic_axes = {"input": _dynamic_axes(model.example_input_array)}
        dynamic_axes.update({name: _dynamic_axes(out) for name, out in zip(output_names, outputs)})
        model.to_onnx(
            export_path,
            input_sample=model.example_input_array,
            export_params=True,
            opset_version=18,
            dynamo=False,
            operator_export_type=torch.onnx.OperatorExportTypes.ONNX_ATEN_FALLBACK,
            input_names=["input"],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
        _logger.info("ONNX exported at %s", export_path)

    def precompute(
        self,
        data_path: Path,
        output_path: Path,
        channel_names: list[str],
        subtrahends: list[Literal["mean"] | float],
        divisors: list[Literal["std"] | tuple[float, float]],
        image_array_key: str = "0",
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        model: LightningModule | None = None,
    ) -> None:
        """Pre-normalise channels of an HCS store into a float16 .npy stack.

        Parameters
        ----------
        data_path : pathlib.Path
            HCS OME-Zarr plate.
        output_path : pathlib.Path
            Output directory (created; must not exist).
        channel_names : list of str
            Channels to keep.
        subtrahends : list of "mean" or float
            Per channel: ``"mean"`` or a percentile.
        divisors : list of "std" or (float, float)
            Per channel: ``"std"`` or (low, high) percentiles.
        image_array_key : str
            Array of each FOV to read.
        include_wells : list of str, optional
            Wells to use; all when ``None``.
        exclude_fovs : list of str, optional
            FOVs to skip.
        model : LightningModule, optional
            Ignored.

        See Also
        --------
        viscy_utils.precompute.precompute_array
        """
        from viscy_utils.precompute import precompute_array

        _warn_ignored_model(model)
        precompute_array(
            data_path=data_path,
            output_path=output_path,
            channel_names=channel_names,
            subtrahends=subtrahends,
            divisors=divisors,
            image_array_key=image_array_key,
            include_wells=include_wells,
            exclude_fovs=exclude_fovs,
        )

    def convert_to_anndata(
        self,
        embeddings_path: Path,
        output_anndata_path: Path,
        overwrite: bool = False,
        model: LightningModule | None = None,
    ) -> None:
        """Convert a legacy xarray embeddings zarr store to an AnnData zarr store.

        Parameters
        ----------
        embeddings_path : pathlib.Path
            Legacy xarray embeddings store.
        output_anndata_path : pathlib.Path
            AnnData zarr store to write.
        overwrite : bool
            Replace an existing output.
        model : LightningModule, optional
            Ignored.
        """
        from viscy_utils.evaluation.annotation import convert

        _warn_ignored_model(model)
        convert(
            embeddings_ds=Path(embeddings_path),
            output_path=Path(output_anndata_path),
            overwrite=overwrite,
            return_anndata=False,
        )
        _logger.info("Anndata saved at: %s", output_anndata_path)
