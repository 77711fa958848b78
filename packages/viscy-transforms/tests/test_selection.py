import pytest
import torch

from viscy_transforms._selection import merge_selected


@pytest.mark.parametrize("n_selected", [0, 1, 3, 5, 7, 8])
def test_merge_selected_places_values_and_keeps_the_rest(n_selected):
    torch.manual_seed(n_selected)
    img = torch.rand(8, 2, 3, 4)
    before = img.clone()
    selected = torch.randperm(8)[:n_selected].sort().values
    values = torch.rand(n_selected, 2, 3, 4, dtype=torch.float64)
    out = merge_selected(img, selected, values)
    assert out.shape == img.shape and out.dtype == torch.float64
    assert torch.equal(out[selected], values)
    keep = torch.ones(8, dtype=torch.bool)
    keep[selected] = False
    assert torch.equal(out[keep], img[keep].double())
    assert torch.equal(img, before)  # the input is never modified
    if n_selected < 8:
        assert out.data_ptr() != img.data_ptr()
