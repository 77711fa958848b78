"""Shared helpers for the viscy-models tests: reference fixtures, deterministic weight fill."""

import ast
import json
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def fill_crc32_uniform(model: torch.nn.Module) -> None:
    """Fill rule crc32-uniform-v1 of the reference fixtures (see fixtures' README in the spec)."""
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
            u = torch.rand(tensor.shape, generator=g, dtype=torch.float64)
            value = 0.75 + 0.5 * u if key.endswith("running_var") else (u - 0.5) * 0.2
            tensor.copy_(value.to(tensor.dtype))


def reference_input(shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g, dtype=torch.float32) * 2 - 1


def load_fixture(name: str) -> tuple[dict, dict, dict]:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    outputs = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    kwargs = ast.literal_eval(meta["constructor_kwargs_python"])
    return meta, outputs, kwargs


def named_outputs(out, names: list[str]) -> dict:
    if isinstance(out, torch.Tensor):
        return {"output": out}
    if isinstance(out, tuple):
        assert len(out) == len(names)
        return dict(zip(names, out))
    assert list(vars(out)) == names
    return dict(vars(out))


@pytest.fixture
def ref():
    """The fixture helpers, as a namespace (tests cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        fill=fill_crc32_uniform, input=reference_input, load=load_fixture, named_outputs=named_outputs
    )


def params_without_gradient(model: torch.nn.Module, loss: torch.Tensor) -> set[str]:
    """Backpropagate ``loss``; return the names of parameters whose gradient is missing or all zero.

    Also asserts that every gradient is finite.
    """
    loss.backward()
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not bad, f"non-finite gradients: {bad[:10]}"
    return {name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}


@pytest.fixture
def no_grad_params():
    return params_without_gradient


def jitter_parameters(model: torch.nn.Module, scale: float = 0.01) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised layers (timm ResNets zero the last norm of
    each residual branch) do not hide the wiring of the layers before them from a gradient test."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return model


@pytest.fixture
def jitter():
    return jitter_parameters
