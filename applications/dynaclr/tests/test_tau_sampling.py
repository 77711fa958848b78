import numpy as np
import pytest

from dynaclr.tau_sampling import sample_tau, tau_probabilities


def test_range_and_type():
    rng = np.random.default_rng(0)
    draws = [sample_tau(2, 8, rng) for _ in range(2000)]
    assert all(type(d) is int for d in draws)
    assert min(draws) >= 2 and max(draws) <= 8
    assert set(draws) == set(range(2, 9))


def test_decay_biases_towards_tau_min():
    rng = np.random.default_rng(1)
    draws = np.array([sample_tau(0, 10, rng, decay_rate=2.0) for _ in range(4000)])
    assert np.median(draws) < 5
    strong = np.array([sample_tau(0, 10, rng, decay_rate=5.0) for _ in range(4000)])
    assert np.mean(strong <= 1) > 0.5


@pytest.mark.parametrize("seed", range(5))
def test_uniform_at_zero_decay(seed):
    rng = np.random.default_rng(seed)
    draws = np.array([sample_tau(1, 9, rng, decay_rate=0.0) for _ in range(3000)])
    assert abs(draws.mean() - 5.0) < 0.25
    counts = np.bincount(draws, minlength=10)[1:]
    assert counts.min() > 3000 / 9 * 0.7


def test_probability_ratio_matches_decay():
    probs = tau_probabilities(3, 7, decay_rate=1.5)
    assert probs.sum() == pytest.approx(1.0)
    assert probs[-1] / probs[0] == pytest.approx(np.exp(-1.5))
    assert np.all(np.diff(probs) < 0)


def test_exclude_zero():
    probs = tau_probabilities(-2, 2, exclude_zero=True)
    assert probs[2] == 0 and probs.sum() == pytest.approx(1.0)
    assert tau_probabilities(0, 0, exclude_zero=True).sum() == 0


def test_equal_bounds_and_errors():
    rng = np.random.default_rng(0)
    assert sample_tau(4, 4, rng) == 4
    with pytest.raises(ValueError, match="tau_max"):
        sample_tau(5, 4, rng)


def test_seeded_determinism():
    a = [sample_tau(0, 20, np.random.default_rng(7)) for _ in range(3)]
    r1, r2 = np.random.default_rng(42), np.random.default_rng(42)
    assert [sample_tau(0, 20, r1) for _ in range(50)] == [sample_tau(0, 20, r2) for _ in range(50)]
    assert len(set(a)) == 1
