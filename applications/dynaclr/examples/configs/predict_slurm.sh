#!/bin/bash
# Embed all tracked cells with a trained DynaCLR checkpoint on one GPU.
#   sbatch predict_slurm.sh
# EDIT: WORKSPACE_DIR, config (ckpt_path and the EmbeddingWriter output_path live in it).

#SBATCH --job-name=contrastive_predict
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --partition=gpu
#SBATCH --cpus-per-task=16
#SBATCH --mem-per-cpu=7G
#SBATCH --time=0-01:00:00
# Preemption and time limit: SIGUSR1 120 s before the end requeues the job; prediction then restarts
# (the embeddings store is written, atomically, only once every cell is embedded).
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --open-mode=append

export PYTHONFAULTHANDLER=1

WORKSPACE_DIR=/path/to/viscy           # EDIT: the repository checkout (uv workspace, `uv sync` done once)
config=./predict.yml                   # EDIT
RUN_DIR="${SLURM_SUBMIT_DIR:-$PWD}/slurm_${SLURM_JOB_ID}"

scontrol show job "$SLURM_JOB_ID"
cat "$config"

# The environment's executable, not `uv run`: uv forwards signals, so SIGUSR1 could reach Python twice.
srun "$WORKSPACE_DIR/.venv/bin/dynaclr" predict -c "$config" --trainer.default_root_dir "$RUN_DIR"
