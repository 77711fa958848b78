"""Checkpoint compatibility with the reference: state_dict structure and forward numerics."""

import pytest
import torch

import viscy_models

MODEL_NAMES = sorted(n for n in viscy_models.__all__ if n != "__version__")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_structure(name, ref):
    meta, _, kwargs = ref.load(name)
    torch.manual_seed(0)
    model = getattr(viscy_models, name)(**kwargs)
    mine = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert mine == meta["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == meta["num_parameters"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_matches_reference(name, ref):
    meta, reference, kwargs = ref.load(name)
    torch.manual_seed(0)
    model = getattr(viscy_models, name)(**kwargs)
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
    assert list(outputs) == list(reference)
    for key, expected in reference.items():
        mine = outputs[key]
        assert mine.shape == expected.shape and mine.dtype == expected.dtype, key
        if expected.dtype == torch.bool:
            assert torch.equal(mine, expected), key
        else:
            torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-5, msg=key)
