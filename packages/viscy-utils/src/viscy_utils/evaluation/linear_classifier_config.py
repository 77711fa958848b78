"""Validated configurations of linear-classifier training and inference (pydantic v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "VALID_CHANNELS",
    "VALID_TASKS",
    "LinearClassifierInferenceConfig",
    "LinearClassifierTrainConfig",
]

VALID_TASKS = Literal["infection_state", "organelle_state", "cell_division_state", "cell_death_state"]
VALID_CHANNELS = Literal["phase", "sensor", "organelle"]


def _non_empty(value: str, field: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{field} must be a non-empty string")
    return value


class LinearClassifierTrainConfig(BaseModel):
    """Configuration of a linear-classifier training run.

    Attributes
    ----------
    task, input_channel, marker, embedding_model
        What is classified and from which embeddings (name the W&B model).
    train_datasets : list of dict
        Each with existing ``embeddings`` (AnnData zarr) and ``annotations`` (CSV) paths and an
        optional ``include_wells`` list.
    use_scaling, use_pca, n_pca_components
        Preprocessing (``n_pca_components`` required when ``use_pca``).
    max_iter, class_weight, solver, random_seed
        Logistic-regression parameters.
    split_train_data : float
        Training fraction in (0, 1]; 1.0 trains on everything without validation.
    wandb_project, wandb_entity, wandb_tags
        Where the model is logged.
    """

    task: VALID_TASKS
    input_channel: VALID_CHANNELS
    marker: str | None = None
    embedding_model: str
    train_datasets: list[dict] = Field(min_length=1)
    use_scaling: bool = True
    use_pca: bool = False
    n_pca_components: int | None = None
    max_iter: int = 1000
    class_weight: Literal["balanced"] | None = "balanced"
    solver: str = "liblinear"
    split_train_data: float = 0.8
    random_seed: int = 42
    wandb_project: str
    wandb_entity: str | None = None
    wandb_tags: list[str] = Field(default_factory=list)

    @field_validator("embedding_model", "wandb_project")
    @classmethod
    def _text_non_empty(cls, value: str, info: ValidationInfo) -> str:
        return _non_empty(value, info.field_name)

    @field_validator("max_iter")
    @classmethod
    def _max_iter_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"max_iter must be positive, got {value}")
        return value

    @field_validator("split_train_data")
    @classmethod
    def _split_in_range(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"split_train_data must be in (0, 1] (1.0 = no validation split), got {value}")
        return value

    @field_validator("train_datasets")
    @classmethod
    def _datasets_exist(cls, datasets: list[dict]) -> list[dict]:
        for i, dataset in enumerate(datasets):
            if not isinstance(dataset, dict) or "embeddings" not in dataset or "annotations" not in dataset:
                raise ValueError(f"Dataset {i} must have 'embeddings' and 'annotations' keys")
            if not Path(dataset["embeddings"]).exists():
                raise ValueError(f"Dataset {i}: Embeddings file not found: {dataset['embeddings']}")
            if not Path(dataset["annotations"]).exists():
                raise ValueError(f"Dataset {i}: Annotations file not found: {dataset['annotations']}")
            wells = dataset.get("include_wells")
            if wells is not None and not (isinstance(wells, list) and all(isinstance(w, str) for w in wells)):
                raise ValueError(f"Dataset {i}: include_wells must be a list of well names like 'A/1', got {wells!r}")
        return datasets

    @model_validator(mode="after")
    def _pca_components(self) -> LinearClassifierTrainConfig:
        if self.use_pca:
            if self.n_pca_components is None:
                raise ValueError("n_pca_components must be specified when use_pca=True")
            if self.n_pca_components <= 0:
                raise ValueError(f"n_pca_components must be positive, got {self.n_pca_components}")
        return self


class LinearClassifierInferenceConfig(BaseModel):
    """Configuration applying a W&B-logged linear classifier to an embedding store.

    Attributes
    ----------
    wandb_project, wandb_entity, model_name, version
        Which artifact to load (``version`` e.g. ``"latest"`` or ``"v0"``).
    embeddings_path : str
        Existing AnnData zarr store to classify.
    output_path : str, optional
        Where to write the result (None: back into ``embeddings_path``).
    include_wells : list of str, optional
        Restrict predictions to these wells (``"A/1"``).
    overwrite : bool
        Allow replacing an existing ``output_path``.
    """

    wandb_project: str
    model_name: str
    version: str = "latest"
    wandb_entity: str | None = None
    embeddings_path: str
    output_path: str | None = None
    include_wells: list[str] | None = None
    overwrite: bool = False

    @field_validator("wandb_project", "model_name")
    @classmethod
    def _text_non_empty(cls, value: str, info: ValidationInfo) -> str:
        return _non_empty(value, info.field_name)

    @field_validator("embeddings_path")
    @classmethod
    def _embeddings_exist(cls, value: str) -> str:
        if not Path(value).exists():
            raise ValueError(f"Embeddings file not found: {value}")
        return value

    @model_validator(mode="after")
    def _output_free(self) -> LinearClassifierInferenceConfig:
        if self.output_path is not None and Path(self.output_path).exists() and not self.overwrite:
            raise ValueError(f"Output file already exists: {self.output_path}. Set overwrite=true to overwrite.")
        return self
