#!/usr/bin/env bash
# The demo pipeline with the `small` preset (30 M-parameter decoder, 4,096-code VQ) on one GPU,
# sized to finish inside 10 minutes on an H200: collection and evaluation use the CPU cores
# (16 workers), the VQ tokenizer and the VLA train on the GPU, and evaluation runs 100 standard
# CALVIN chains in the PlayTable simulator. Prints the demo summary; results in runs/gpu_demo/.
#
#   bash bench/gpu_demo.sh [extra hydra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORKERS=${WORKERS:-$(nproc)}
exec "$PY" -m emu3_vla.cli demo \
  run_dir=runs/gpu_demo model=small device=cuda workers="$WORKERS" \
  views.static=128 views.gripper=64 \
  collect.episodes_per_task=60 \
  vq.steps=3000 vq.batch_size=64 vq.crop=96 \
  train.steps=3000 train.batch_size=64 train.lr=5e-4 train.frame_stride=2 \
  eval.per_task=20 eval.chains=100 eval.envs=8 eval.decoder=static \
  "$@"
