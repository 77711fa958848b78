import logging

import pytest
import yaml
from _mx_testdata import make_experiment, write_experiments_yaml  # loaded by conftest.py

from dynaclr.experiment import ExperimentConfig, ExperimentRegistry


@pytest.fixture
def two(tmp_path):
    a = make_experiment(tmp_path, "exp_a", channel_names=["Phase", "GFP", "RFP"], source_channel=["Phase", "RFP"])
    b = make_experiment(tmp_path, "exp_b", channel_names=["Phase", "GFP"], source_channel=["Phase", "GFP"], code=2)
    return a, b


def test_config_defaults():
    cfg = ExperimentConfig("e", "d", "t", ["a"], ["a"], {"c": ["A/1"]})
    assert (cfg.interval_minutes, cfg.start_hpi, cfg.organelle, cfg.date, cfg.moi) == (30.0, 0.0, "", "", 0.0)


def test_channel_maps_align_by_position(two):
    reg = ExperimentRegistry(list(two))
    assert reg.num_source_channels == 2
    assert reg.channel_maps == {"exp_a": {0: 0, 1: 2}, "exp_b": {0: 0, 1: 1}}


def test_errors_in_order(tmp_path, two):
    a, b = two
    with pytest.raises(ValueError, match="Empty"):
        ExperimentRegistry([])
    with pytest.raises(ValueError, match="Duplicate"):
        ExperimentRegistry([a, a])
    bad = ExperimentConfig(**{**a.__dict__, "interval_minutes": 0})
    with pytest.raises(ValueError, match="interval_minutes"):
        ExperimentRegistry([bad])
    bad = ExperimentConfig(**{**a.__dict__, "condition_wells": {}})
    with pytest.raises(ValueError, match="condition_wells"):
        ExperimentRegistry([bad])
    bad = ExperimentConfig(**{**a.__dict__, "source_channel": ["Phase", "Mito"]})
    with pytest.raises(ValueError, match="Mito"):
        ExperimentRegistry([bad])
    bad = ExperimentConfig(**{**a.__dict__, "data_path": str(tmp_path / "nope.zarr")})
    with pytest.raises(ValueError, match="data_path"):
        ExperimentRegistry([bad])
    bad = ExperimentConfig(**{**a.__dict__, "channel_names": ["Phase", "RFP", "GFP"]})
    with pytest.raises(ValueError, match="expected"):
        ExperimentRegistry([bad])
    bad = ExperimentConfig(**{**b.__dict__, "source_channel": ["Phase"]})
    with pytest.raises(ValueError, match="source_channel.*exp_a.*2.*exp_b.*1"):
        ExperimentRegistry([a, bad])


def test_zero_fill_missing_channels(two, caplog):
    a, b = two
    c = ExperimentConfig(**{**b.__dict__, "name": "exp_c", "source_channel": ["Phase", "RFP"]})
    with pytest.raises(ValueError, match="RFP"):
        ExperimentRegistry([a, c])
    with caplog.at_level(logging.WARNING):
        reg = ExperimentRegistry([a, c], zero_fill_missing_channels=True)
    assert reg.channel_maps["exp_c"] == {0: 0}
    assert "zeros" in caplog.text


def test_from_yaml_round_trip(tmp_path, two):
    a, b = two
    a.start_hpi = 3.5
    path = write_experiments_yaml(tmp_path / "exp.yml", [a, b])
    reg = ExperimentRegistry.from_yaml(path)
    assert [e.name for e in reg.experiments] == ["exp_a", "exp_b"]
    assert reg.get_experiment("exp_a").start_hpi == 3.5
    assert reg.get_experiment("exp_a") == a
    zero = write_experiments_yaml(tmp_path / "z.yml", [a], zero_fill_missing_channels=True)
    assert ExperimentRegistry.from_yaml(zero).zero_fill_missing_channels


def test_from_yaml_unknown_key(tmp_path, two):
    entry = {**two[0].__dict__, "colour": "red"}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"experiments": [entry]}))
    with pytest.raises(TypeError, match="colour"):
        ExperimentRegistry.from_yaml(path)


def test_tau_range_frames(tmp_path, two, caplog):
    a, b = two
    b.interval_minutes = 15.0
    reg = ExperimentRegistry([a, b])
    assert reg.tau_range_frames("exp_a", (0.5, 2.0)) == (1, 4)
    assert reg.tau_range_frames("exp_b", (0.5, 2.0)) == (2, 8)
    assert reg.tau_range_frames("exp_b", (0.5, 1.5)) == (2, 6)
    with caplog.at_level(logging.WARNING):
        assert reg.tau_range_frames("exp_a", (0, 0)) == (0, 0)
    assert "fewer than 2 valid frames" in caplog.text


def test_get_experiment_unknown(two):
    reg = ExperimentRegistry(list(two))
    with pytest.raises(KeyError, match="nope.*exp_a"):
        reg.get_experiment("nope")
