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
# Preemption and time limit: 120 s before the end SLURM sends SIGUSR1; Lightning saves
# <default_root_dir>/hpc_ckpt_<n>.ckpt and requeues the job, which resumes from it automatically.
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --open-mode=append

export NCCL_DEBUG=INFO
export PYTHONFAULTHANDLER=1

WORKSPACE_DIR=/path/to/viscy           # EDIT: the repository checkout (uv workspace, `uv sync` done once)
config=./fit.yml                       # EDIT
# One folder per job for the requeue checkpoints: a requeued job keeps its SLURM_JOB_ID and finds them,
# a new job never resumes another job's.
RUN_DIR="${SLURM_SUBMIT_DIR:-$PWD}/slurm_${SLURM_JOB_ID}"

# Remove node-local copies of zarr stores when the job ends, however it ends.
cleanup() { rm -rf "/tmp/${SLURM_JOB_ID}"/*.zarr; }
trap cleanup EXIT

scontrol show job "$SLURM_JOB_ID"
cat "$config"

# The environment's executable, not `uv run`: uv forwards signals, so SIGUSR1 could reach Python twice.
srun "$WORKSPACE_DIR/.venv/bin/dynaclr" fit -c "$config" --trainer.default_root_dir "$RUN_DIR"
