import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import viscy_utils
from viscy_data.norm_meta import STATISTICS
from viscy_utils.cli_utils import format_markdown_table, load_config
from viscy_utils.log_images import detach_sample, render_images
from viscy_utils.mp_utils import get_val_stats, mp_get_val_stats, mp_wrapper
from viscy_utils.normalize import hist_adapteq_2D, hist_clipping, unzscore, zscore


def _power(x, p):
    return x**p


def test_public_names_are_lazy():
    assert sorted(viscy_utils.__all__) == sorted(
        ["detach_sample", "render_images", "get_val_stats", "mp_wrapper", "hist_clipping", "unzscore", "zscore"]
    )
    for name in viscy_utils.__all__:
        assert callable(getattr(viscy_utils, name))
    with pytest.raises(AttributeError, match="nothing"):
        viscy_utils.nothing  # noqa: B018
    heavy = "('torch', 'lightning', 'viscy_utils.normalize')"
    probe = f"import sys, viscy_utils; print(any(m in sys.modules for m in {heavy}))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("seed", range(5))
def test_zscore_property(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 20), size=(7, 33))
    z = zscore(x)
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1, rel=1e-9)
    np.testing.assert_allclose(unzscore(z, x.mean(), x.std()), x, rtol=1e-9, atol=1e-9)


def test_zscore_explicit_values_including_zero_mean():
    np.testing.assert_allclose(zscore(np.array([10.0, 20.0, 30.0]), 20, 10), [-1, 0, 1])
    # a mean of 0 is a value, not "missing" (the reference re-computed it)
    np.testing.assert_allclose(zscore(np.array([1.0, 2.0, 3.0]), im_mean=0.0, im_std=1.0), [1, 2, 3])


def test_unzscore_median_iqr_round_trip():
    x = np.random.default_rng(0).gamma(2, 3, size=1000)
    median, iqr = np.median(x), np.subtract(*np.percentile(x, [75, 25]))
    np.testing.assert_allclose(unzscore((x - median) / iqr, median, iqr), x, rtol=1e-9)


def test_hist_clipping():
    x = np.arange(101, dtype=float)
    clipped = hist_clipping(x, 10, 90)
    assert clipped.min() == 10 and clipped.max() == 90
    np.testing.assert_array_equal(clipped[10:91], x[10:91])
    with pytest.raises(AssertionError):
        hist_clipping(x, 90, 10)
    with pytest.raises(AssertionError):
        hist_clipping(x, 10, 101)


def test_hist_adapteq_2d():
    image = np.random.default_rng(0).random((32, 40)) * 0.2
    out = hist_adapteq_2D(image, kernel_size=8, clip_limit=0.5)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert out.std() > image.std()  # contrast increased
    hist_adapteq_2D(image, kernel_size=(8, 10))
    with pytest.raises(ValueError, match="smaller than the image"):
        hist_adapteq_2D(image, kernel_size=32)
    with pytest.raises(ValueError, match="one entry per image dimension"):
        hist_adapteq_2D(image, kernel_size=[8])
    with pytest.raises(ValueError, match="int, a list or a tuple"):
        hist_adapteq_2D(image, kernel_size=8.0)
    with pytest.raises(AssertionError):
        hist_adapteq_2D(image, clip_limit=2)


def test_get_val_stats_values():
    x = np.random.default_rng(0).normal(size=1000)
    x[::100] = np.nan
    stats = get_val_stats(x)
    assert list(stats) == list(STATISTICS)
    assert all(isinstance(v, float) for v in stats.values())
    assert stats["mean"] == np.nanmean(x) and stats["std"] == np.nanstd(x)
    p1, p5, p25, p50, p75, p95, p99 = np.nanpercentile(x, [1, 5, 25, 50, 75, 95, 99])
    assert stats["median"] == p50 and stats["iqr"] == p75 - p25 and stats["p99_p1"] == p99 - p1


def test_mp_wrapper_keeps_order():
    args = [(i, 2) for i in range(7)]
    assert mp_wrapper(_power, args, workers=2) == [i**2 for i in range(7)]
    assert mp_wrapper(_power, args, workers=1) == [i**2 for i in range(7)]
    with pytest.raises(ValueError, match="workers"):
        mp_wrapper(_power, args, workers=0)
    arrays = [np.arange(10.0) * k for k in range(1, 4)]
    stats = mp_get_val_stats(arrays, workers=2)
    assert [s["mean"] for s in stats] == [4.5, 9.0, 13.5]


def test_detach_sample_and_render_images():
    source = torch.rand(4, 1, 5, 6, 7)
    target = torch.rand(4, 2, 5, 6, 7, requires_grad=True)
    rows = detach_sample([source, target], log_samples_per_batch=3)
    assert len(rows) == 3 and len(rows[0]) == 2
    assert rows[0][0].shape == (6, 7) and rows[0][1].shape == (2, 6, 7)
    np.testing.assert_array_equal(rows[2][0], source[2, 0, 2].numpy())
    assert len(detach_sample([source], 10)) == 4
    grid = render_images(rows)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 6, 3 * 7, 3)  # 1 + 2 channels side by side
    # each channel is rescaled on its own: gray colormap maps the minimum to black and maximum to white
    first = grid[:6, :7]
    assert first.min() == 0 and first.max() == 255
    np.testing.assert_array_equal(first[..., 0], first[..., 1])
    # column 1 uses inferno by default: not gray
    assert not np.array_equal(grid[:6, 7:14, 0], grid[:6, 7:14, 2])
    gray = render_images(rows, cmaps=["gray", "gray"])
    np.testing.assert_array_equal(gray[:6, 7:14, 0], gray[:6, 7:14, 2])
    assert render_images([]).shape == (0, 0, 3)
    with pytest.raises(ValueError, match="share a"):
        render_images([[np.zeros((4, 4)), np.zeros((5, 4))]])


def test_format_markdown_table_exact():
    assert format_markdown_table({"train_accuracy": 0.91234, "n_samples": 10}, title="Results") == (
        "## Results\n\n| Metric | Value |\n|---------|--------|\n| Train Accuracy | 0.912 |\n| N Samples | 10 |\n"
    )
    rows = [{"class_name": "a", "f1": 0.5}, {"class_name": "b"}]
    assert format_markdown_table(rows) == ("| Class Name | F1 |\n|-------------|-----|\n| a | 0.500 |\n| b |  |\n")
    assert format_markdown_table({"a": 1}, headers=["k", "v"]) == "| k | v |\n|----|----|\n| A | 1 |\n"
    assert format_markdown_table([], title="Empty") == "## Empty\n\n"


def test_load_config(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"a": {"b": [1, 2]}}))
    assert load_config(path) == {"a": {"b": [1, 2]}}
    (tmp_path / "empty.yml").write_text("")
    assert load_config(tmp_path / "empty.yml") is None
    (tmp_path / "bad.yml").write_text("a: [1, 2\n")
    with pytest.raises(yaml.YAMLError):
        load_config(tmp_path / "bad.yml")
    with pytest.raises(FileNotFoundError, match="Config file not found: .*nope.yml"):
        load_config(tmp_path / "nope.yml")
