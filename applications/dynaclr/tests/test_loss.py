import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import NTXentLoss

from dynaclr.loss import NTXentHCL


def _pairs(n, d, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(n, d, generator=g)
    positive = anchor + 0.3 * torch.randn(n, d, generator=g)
    emb = torch.cat([anchor, positive]).to(device)
    labels = torch.cat([torch.arange(n), torch.arange(n)]).to(device)
    return emb, labels


def test_is_ntxent_subclass_with_defaults():
    loss = NTXentHCL()
    assert isinstance(loss, NTXentLoss) and isinstance(loss, torch.nn.Module)
    assert loss.temperature == 0.07 and loss.beta == 0.5


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_beta_zero_equals_ntxent(seed, temperature):
    emb, labels = _pairs(32, 16, seed)
    ours = NTXentHCL(temperature=temperature, beta=0.0)(emb, labels)
    ref = NTXentLoss(temperature=temperature)(emb, labels)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_beta_zero_equals_ntxent_gradients_and_lp_distance():
    emb, labels = _pairs(16, 8, 3)
    e1, e2 = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    NTXentHCL(beta=0.0)(e1, labels).backward()
    NTXentLoss()(e2, labels).backward()
    torch.testing.assert_close(e1.grad, e2.grad, atol=1e-6, rtol=1e-5)
    ours = NTXentHCL(temperature=0.5, beta=0.0, distance=LpDistance())(emb, labels)
    ref = NTXentLoss(temperature=0.5, distance=LpDistance())(emb, labels)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_beta_zero_equals_ntxent_with_repeated_labels():
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 6, (30,), generator=g)
    torch.testing.assert_close(NTXentHCL(beta=0.0)(emb, labels), NTXentLoss()(emb, labels), atol=1e-6, rtol=0)


def test_beta_positive_differs_and_hard_negative_raises_loss():
    emb, labels = _pairs(16, 8, 1)
    assert not torch.allclose(NTXentHCL(beta=1.0)(emb, labels), NTXentLoss()(emb, labels))
    hard = emb.clone()
    hard[1] = hard[0] + 1e-3  # sample 1 is a negative of anchor 0, nearly identical to it
    easy_loss = NTXentHCL(beta=1.0)(emb, labels)
    hard_loss = NTXentHCL(beta=1.0)(hard, labels)
    assert hard_loss > easy_loss
    # concentrating on hard negatives weighs them more than plain NT-Xent does
    assert NTXentHCL(beta=1.0)(hard, labels) > NTXentHCL(beta=0.0)(hard, labels)


def test_matches_explicit_formula():
    emb, labels = _pairs(6, 4, 2)
    beta, temp = 0.8, 0.3
    z = torch.nn.functional.normalize(emb, dim=1)
    s = z @ z.T
    n = len(labels)
    losses = []
    for i in range(n):
        for p in range(n):
            if p == i or labels[p] != labels[i]:
                continue
            neg = labels != labels[i]
            w = neg.sum() * torch.softmax(beta * s[i, neg], 0)
            den = torch.exp(s[i, p] / temp) + (w * torch.exp(s[i, neg] / temp)).sum()
            losses.append(-torch.log(torch.exp(s[i, p] / temp) / den))
    torch.testing.assert_close(NTXentHCL(temperature=temp, beta=beta)(emb, labels), torch.stack(losses).mean())


def test_scalar_with_gradient_reaching_encoder():
    encoder = torch.nn.Linear(8, 4)
    x, labels = _pairs(8, 8, 0)
    loss = NTXentHCL()(encoder(x), labels)
    assert loss.ndim == 0 and loss.requires_grad
    loss.backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


def test_temperature_changes_value():
    emb, labels = _pairs(16, 8, 0)
    assert not torch.isclose(NTXentHCL(temperature=0.07)(emb, labels), NTXentHCL(temperature=0.5)(emb, labels))


def test_single_pair_is_zero_and_large_batch_finite():
    emb, labels = _pairs(1, 8, 0)
    out = NTXentHCL()(emb, labels)
    assert torch.isfinite(out) and out == 0
    emb, labels = _pairs(128, 32, 0)
    out = NTXentHCL()(emb, labels)
    assert torch.isfinite(out) and out > 0


def test_extreme_similarities_stay_finite():
    emb, labels = _pairs(16, 8, 0)
    out = NTXentHCL(temperature=0.01, beta=50.0)(emb * 1e3, labels)
    assert torch.isfinite(out)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_equivalence():
    emb, labels = _pairs(64, 32, 0, device="cuda")
    torch.testing.assert_close(NTXentHCL(beta=0.0)(emb, labels), NTXentLoss()(emb, labels), atol=1e-6, rtol=0)
    cpu = NTXentHCL(beta=0.5)(emb.cpu(), labels.cpu())
    torch.testing.assert_close(NTXentHCL(beta=0.5)(emb, labels).cpu(), cpu, atol=1e-5, rtol=1e-5)
