"""The FUCCI example (applications/dynaclr/examples/fucci): its phase rule, and a short end-to-end run (slow)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "fucci" / "run_fucci.py"


@pytest.fixture(scope="module")
def fucci():
    spec = importlib.util.spec_from_file_location("run_fucci", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_fucci"] = module
    spec.loader.exec_module(module)
    return module


def test_phase_rule_follows_fucciphase(fucci):
    # one cell through G1 (cyan only), G1/S (both), S/G2/M (magenta only); a second cell with neither on
    cyan = [10, 500, 1000, 1000, 1000, 600, 80, 10, 10, 10]
    magenta = [0, 0, 0, 0, 400, 800, 1000, 1000, 1000, 1000]
    tracks = pd.DataFrame(
        {
            "track_id": [1] * 10 + [2] * 3,
            "t": list(range(10)) + [0, 1, 2],
            fucci.CYAN: cyan + [0, 0, 0],
            fucci.MAGENTA: magenta + [0, 0, 0],
        }
    )
    phases = fucci.fucci_phases(tracks, window=1).tolist()
    assert phases[:10] == ["G1", "G1", "G1", "G1", "G1/S", "G1/S", "S/G2/M", "S/G2/M", "S/G2/M", "S/G2/M"]
    assert phases[10:] == ["G1"] * 3  # both reporters off: early G1 in fucciphase's FUCCI(SA) sensor
    # the moving average runs within each cell: the dark cell next to the bright one in the table stays dark
    assert fucci.fucci_phases(tracks, window=7).iloc[10:].tolist() == ["G1"] * 3


def test_hours_since_birth_only_for_filmed_births(fucci):
    tracks = pd.DataFrame({"track_id": [1, 1, 2, 2, 2], "t": [0, 1, 2, 3, 4], "parent_track_id": [-1, -1, 1, 1, 1]})
    hours = fucci.hours_since_birth(tracks)
    assert np.isnan(hours[:2]).all()
    assert hours[2:].tolist() == [0.0, 0.25, 0.5]


def test_splits_hold_out_whole_lineages(fucci):
    lineages = [lineage for split in fucci.SPLITS.values() for lineage in split]
    assert len(lineages) == len(set(lineages))
    assert set(fucci.SPLITS) == {"train", "val", "test"}


@pytest.mark.slow
def test_fucci_example_short_crop(fucci, tmp_path, request):
    """Fetch fucciphase 0.1.0 from PyPI (cached in .pytest_cache), run the example on 30 frames, check the report."""
    cache = request.config.cache.mkdir("fucciphase-0.1.0")
    try:
        fucci.fetch(cache)
    except fucci.DataUnavailable as err:
        pytest.skip(f"the FUCCI data (fucciphase 0.1.0 sdist on PyPI) could not be fetched: {err}")
    metrics = fucci.run(tmp_path / "out", cache, seeds=[0], max_frames=30, max_epochs=1)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["frames"] == 30
    expected = {"DynaCLR (trained)", "untrained encoder", "raw-pixel linear probe", "disc intensity features"}
    assert set(metrics["methods"]) == expected
    for name, runs in metrics["methods"].items():
        assert len(runs) == 1, name
        run = runs[0]
        for key in ("val_phase_balanced_accuracy", "test_phase_balanced_accuracy"):
            assert 0.0 <= run[key] <= 1.0, (name, key)
        assert -1.0 <= run["test_hours_since_birth_spearman"] <= 1.0 and not math.isnan(
            run["test_hours_since_birth_spearman"]
        )
    # the imported data are where experiments.yml points, in the layouts the loaders read
    tracks = pd.read_csv(tmp_path / "out" / "data" / "tracks_all" / "A" / "1" / "0" / "tracks.csv")
    assert tracks["t"].max() == 29
    assert (tracks["parent_track_id"] >= 0).any()  # the lineages' divisions survived the import
    assert (tmp_path / "out" / "embeddings" / "trained_seed0.zarr").is_dir()
