"""Two real DDP processes (gloo, CPU) through Trainer(strategy="ddp", devices=2).

Run by the test below as a script (Lightning's DDP launcher re-executes the script per rank).
"""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent


def _main(out_dir: pathlib.Path) -> None:
    import lightning.pytorch as pl
    import torch

    spec = importlib.util.spec_from_file_location("_mx_testdata", HERE / "_mx_testdata.py")
    testdata = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(testdata)
    make_experiment, write_experiments_yaml = testdata.make_experiment, testdata.write_experiments_yaml

    from dynaclr.datamodule import MultiExperimentDataModule

    wells = {"uninfected": ["A/1"], "infected": ["B/1"]}
    exp_yaml = out_dir / "experiments.yml"
    if not exp_yaml.exists():  # written once by rank 0 before the launcher starts rank 1
        a = make_experiment(out_dir, "exp_a", condition_wells=wells, code=1, fovs_per_well=2)
        b = make_experiment(out_dir, "exp_b", condition_wells=wells, code=2)
        write_experiments_yaml(exp_yaml, [a, b])

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.steps = 0
            self.val_steps = 0

        def on_train_epoch_start(self):
            sampler = self.trainer.train_dataloader.batch_sampler
            self.record = {"rank": sampler.rank, "world": sampler.num_replicas, "batches": list(sampler)}

        def training_step(self, batch, batch_idx):
            self.steps += 1
            return (self.w * batch["anchor"].mean()).sum()

        def validation_step(self, batch, batch_idx):
            self.val_steps += 1

        def on_train_end(self):
            self.record.update(steps=self.steps, val_steps=self.val_steps, global_rank=self.global_rank)
            (out_dir / f"rank{self.global_rank}.json").write_text(json.dumps(self.record))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = MultiExperimentDataModule(
        str(exp_yaml),
        z_range=(0, 1),
        yx_patch_size=(32, 32),
        final_yx_patch_size=(32, 32),
        val_experiments=["exp_b"],
        tau_range=(0.5, 1.0),
        batch_size=5,
        num_workers=0,
        channel_dropout_prob=0.0,
    )
    trainer = pl.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Recorder(), datamodule=dm)


# two Python processes importing Lightning: ~40 s on 2 idle cores
@pytest.mark.timeout(300)
def test_ddp_two_processes_disjoint_equal_batches(tmp_path):
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert ranks[0]["steps"] == ranks[1]["steps"] == len(ranks[0]["batches"]) == len(ranks[1]["batches"]) > 0
    assert ranks[0]["val_steps"] == ranks[1]["val_steps"] > 0
    b0 = {tuple(b) for b in ranks[0]["batches"]}
    b1 = {tuple(b) for b in ranks[1]["batches"]}
    assert not b0 & b1


if __name__ == "__main__":
    _main(pathlib.Path(sys.argv[1]))
