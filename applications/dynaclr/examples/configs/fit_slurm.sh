#!/bin/bash
# Train DynaCLR on one node with 4 GPUs (one task per GPU; Lightning reads the SLURM environment).
#   sbatch fit_slurm.sh
# EDIT: the #SBATCH resources (keep ntasks-per-node = gres gpu count = trainer.devices in fit.yml,
# nodes = trainer.num_nodes), WORKSPACE_DIR and config.

#SBATCH --job-name=contrastive_origin
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --partition=gpu
#SBATCH --cpus-per-task=14
#SBATCH --mem-per-cpu=15G
#SBATCH --time=0-20:00:00

export NCCL_DEBUG=INFO
export PYTHONFAULTHANDLER=1

WORKSPACE_DIR=/path/to/viscy           # EDIT: the repository checkout (uv workspace)
config=./fit.yml                       # EDIT

# Remove node-local copies of zarr stores when the job ends, however it ends.
cleanup() { rm -rf "/tmp/${SLURM_JOB_ID}"/*.zarr; }
trap cleanup EXIT

scontrol show job "$SLURM_JOB_ID"
cat "$config"

srun uv run --project "$WORKSPACE_DIR" --package dynaclr dynaclr fit -c "$config"
