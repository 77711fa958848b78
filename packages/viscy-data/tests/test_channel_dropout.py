import pytest
import torch

from viscy_data.channel_dropout import ChannelDropout


def _x(b=8, c=3):
    return torch.rand(b, c, 2, 4, 4) + 1.0


def test_p1_zeroes_listed_channel_only():
    x = _x()
    out = ChannelDropout([1], p=1.0).train()(x)
    assert torch.all(out[:, 1] == 0)
    torch.testing.assert_close(out[:, [0, 2]], x[:, [0, 2]])


def test_p0_and_eval_are_identity_objects():
    x = _x()
    assert ChannelDropout([1], p=0.0).train()(x) is x
    assert ChannelDropout([1], p=1.0).eval()(x) is x


def test_input_not_modified_and_dtype_device_kept():
    x = _x().double()
    before = x.clone()
    out = ChannelDropout([0, 2], p=1.0).train()(x)
    torch.testing.assert_close(x, before)
    assert out.dtype == torch.float64 and out.device == x.device
    assert torch.all(out[:, 0] == 0) and torch.all(out[:, 2] == 0)
    torch.testing.assert_close(out[:, 1], x[:, 1])


@pytest.mark.parametrize("seed", range(5))
def test_drop_rate_and_per_sample_independence(seed):
    torch.manual_seed(seed)
    x = _x(b=2000, c=2)
    out = ChannelDropout([1], p=0.3).train()(x)
    dropped = (out[:, 1] == 0).flatten(1).all(1)
    assert abs(dropped.float().mean().item() - 0.3) < 0.05
    # whole channels are dropped, never parts of them
    assert torch.all((out[:, 1] == 0).flatten(1).all(1) == (out[:, 1] == 0).flatten(1).any(1))
    torch.testing.assert_close(out[:, 0], x[:, 0])


def test_channels_drop_independently():
    torch.manual_seed(0)
    out = ChannelDropout([0, 1], p=0.5).train()(_x(b=4000, c=2))
    d0 = (out[:, 0] == 0).flatten(1).all(1).float()
    d1 = (out[:, 1] == 0).flatten(1).all(1).float()
    assert abs((d0 * d1).mean().item() - 0.25) < 0.04


def test_bad_arguments():
    with pytest.raises(ValueError, match="p must be"):
        ChannelDropout([0], p=1.5)
    with pytest.raises(IndexError, match=r"\[5\]"):
        ChannelDropout([5], p=0.5).train()(_x())


def test_package_export():
    import viscy_data

    assert viscy_data.ChannelDropout is ChannelDropout


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda():
    x = _x().cuda()
    out = ChannelDropout([1], p=1.0).train()(x)
    assert out.is_cuda and torch.all(out[:, 1] == 0)
