import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

import dynaclr
from dynaclr.cli import LIGHTNING_SUBCOMMANDS, LazyCommand
from dynaclr.cli import dynaclr as dynaclr_group

EVALUATION_COMMANDS = [
    "train-linear-classifier",
    "apply-linear-classifier",
    "discover-datasets",
    "generate-train-config",
    "generate-prediction-scripts",
]


def test_package_exports_exactly_the_spec_names_lazily():
    assert dynaclr.__all__ == sorted(
        [
            "BetaVaeModule",
            "ContrastiveModule",
            "ContrastivePrediction",
            "ExperimentConfig",
            "ExperimentRegistry",
            "MultiExperimentDataModule",
            "MultiExperimentIndex",
            "MultiExperimentTripletDataset",
            "NTXentHCL",
            "sample_tau",
        ]
    )
    from dynaclr.engine import ContrastiveModule

    assert dynaclr.ContrastiveModule is ContrastiveModule
    from viscy_data.channel_dropout import ChannelDropout
    from viscy_data.sampler import FlexibleBatchSampler

    assert dynaclr.FlexibleBatchSampler is FlexibleBatchSampler
    assert dynaclr.ChannelDropout is ChannelDropout
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dynaclr.Nope  # noqa: B018


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, dynaclr, dynaclr.cli\n"
        "from click.testing import CliRunner\n"
        "result = CliRunner().invoke(dynaclr.cli.dynaclr, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'timm', 'monai', 'wandb') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_help_lists_every_command_fast():
    start = time.perf_counter()
    result = subprocess.run(["dynaclr", "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    for name in [*LIGHTNING_SUBCOMMANDS, *EVALUATION_COMMANDS]:
        assert f"  {name} " in result.stdout, name
    assert elapsed < 10, f"dynaclr --help took {elapsed:.1f} s"


@pytest.mark.parametrize("subcommand", ["fit", "predict", "export", "rechunk"])
def test_lightning_subcommands_forward_arguments_unchanged(monkeypatch, subcommand):
    import viscy_utils.cli

    calls = []
    monkeypatch.setattr(viscy_utils.cli, "run_cli", lambda args, **kw: calls.append((list(args), kw)))
    extra = ["-c", "config.yml", "--trainer.max_epochs", "3", "--print_config", "--help"]
    result = CliRunner().invoke(dynaclr_group, [subcommand, *extra])
    assert result.exit_code == 0, result.output
    assert calls[0][0] == [subcommand, *extra]
    assert calls[0][1]["prog"] == "dynaclr"


def test_lazy_command_with_missing_dependency_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "needs_extra_mod.py").write_text(
        "from dynaclr.evaluation import require_extra\nrequire_extra('surely_not_installed_pkg_xyz')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = click.Group(commands=[LazyCommand("tool", "needs_extra_mod", short_help="A tool")])
    help_result = CliRunner().invoke(group, ["tool", "--help"])
    assert help_result.exit_code == 0
    assert 'pip install "dynaclr[eval]"' in help_result.output
    assert "surely_not_installed_pkg_xyz" in help_result.output
    run_result = CliRunner().invoke(group, ["tool"])
    assert run_result.exit_code == 1
    assert 'pip install "dynaclr[eval]"' in run_result.output
    assert "A tool" in CliRunner().invoke(group, ["--help"]).output


def test_lazy_command_loads_target_only_when_needed(tmp_path, monkeypatch):
    (tmp_path / "lazy_target_mod.py").write_text(
        "import click\n"
        "@click.command()\n@click.option('--name', required=True)\n"
        "def main(name):\n    click.echo(f'hello {name}')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_target_mod", raising=False)
    group = click.Group(commands=[LazyCommand("hello", "lazy_target_mod", short_help="Greets")])
    assert "Greets" in CliRunner().invoke(group, ["--help"]).output
    assert "lazy_target_mod" not in sys.modules
    assert "--name" in CliRunner().invoke(group, ["hello", "--help"]).output
    assert CliRunner().invoke(group, ["hello", "--name", "cells"]).output == "hello cells\n"
    assert CliRunner().invoke(group, ["hello"]).exit_code == 2  # missing required option


def test_lazy_command_rejects_non_click_target():
    group = click.Group(commands=[LazyCommand("bad", "dynaclr.cli:LIGHTNING_SUBCOMMANDS")])
    result = CliRunner().invoke(group, ["bad"])
    assert isinstance(result.exception, TypeError)


@pytest.mark.parametrize("name", EVALUATION_COMMANDS)
def test_evaluation_commands_show_their_options(name):
    result = CliRunner().invoke(dynaclr_group, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "--" in result.output and "pip install" not in result.output
