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

export PYTHONFAULTHANDLER=1

WORKSPACE_DIR=/path/to/viscy           # EDIT
config=./predict.yml                   # EDIT

scontrol show job "$SLURM_JOB_ID"
cat "$config"

srun uv run --project "$WORKSPACE_DIR" --package dynaclr dynaclr predict -c "$config"
