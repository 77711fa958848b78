"""Checkpoint compatibility with the reference: state_dict structure and forward numerics."""

from pathlib import Path

import pytest
import torch

import viscy_models

FIXTURES = Path(__file__).parent / "fixtures"

MODEL_NAMES = sorted(n for n in viscy_models.__all__ if n != "__version__")
# The eight default-ish configurations, then six far from the defaults (fixtures/variants/).
FIXTURE_NAMES = MODEL_NAMES + sorted(f"variants/{p.stem}" for p in (FIXTURES / "variants").glob("*.json"))


def _model_name(fixture: str) -> str:
    return fixture.rsplit("/", 1)[-1]


def test_all_fixtures_are_collected():
    assert len(FIXTURE_NAMES) == 14


@pytest.fixture(scope="module")
def built():
    """Each fixture's model, built once for the structure test and the forward test (construction is slow)."""
    return {}


def _build(name: str, ref, built: dict):
    if name not in built:
        meta, reference, kwargs = ref.load(name)
        torch.manual_seed(0)
        built[name] = (meta, reference, getattr(viscy_models, _model_name(name))(**kwargs))
    return built[name]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_state_dict_structure(name, ref, built):
    meta, _, model = _build(name, ref, built)
    mine = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert mine == meta["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == meta["num_parameters"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_forward_matches_reference(name, ref, built):
    meta, reference, model = _build(name, ref, built)
    del built[name]  # the fill below changes the weights; free the memory afterwards
    ref.fill(model)
    check = meta["fill_check"]
    state = model.state_dict()
    first = state[check["first_float_key"]].flatten()[:4].double()
    torch.testing.assert_close(first, torch.tensor(check["first_values"], dtype=torch.float64))
    total = sum(v.double().sum().item() for v in state.values() if v.is_floating_point())
    assert total == pytest.approx(check["sum_of_all_filled_float_entries"], rel=1e-9)
    model.eval()
    x = ref.input(meta["input"]["shape"])
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x, **meta["forward_kwargs"])
    outputs = ref.named_outputs(out, meta["output_structure"]["names"])
    assert list(outputs) == list(reference) == [o["name"] for o in meta["outputs"]]
    for spec in meta["outputs"]:
        key, mine, expected = spec["name"], outputs[spec["name"]], reference[spec["name"]]
        assert list(mine.shape) == spec["shape"] and str(mine.dtype).removeprefix("torch.") == spec["dtype"], key
        if mine.dtype == torch.bool:
            assert torch.equal(mine.flatten()[:: spec["pt_subsample_k"]], expected.flatten()), key
            continue
        # Large outputs are stored as flatten()[::k] (pt_mode "subsampled"); the JSON statistics cover all of it.
        if meta["pt_mode"] == "full":
            assert mine.shape == expected.shape, key
        torch.testing.assert_close(
            mine.flatten()[:: spec["pt_subsample_k"]], expected.flatten(), rtol=1e-4, atol=1e-5, msg=key
        )
        stats = mine.double()
        torch.testing.assert_close(stats.flatten()[:16].tolist(), spec["first16"], rtol=1e-4, atol=1e-5)
        for name, value in [("mean", stats.mean()), ("std", stats.std(correction=0)), ("abs_max", stats.abs().max())]:
            assert value.item() == pytest.approx(spec[name], rel=1e-4, abs=1e-5), (key, name)
