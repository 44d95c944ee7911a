#!/usr/bin/env bash
# Every GPU measurement the package has, in one run that fits a lent GPU's 10 minutes of wall time,
# with all figures in one JSON ($OUT/gpu_all.json, else runs/gpu_all/gpu_all.json):
#
#   recipe  the calvin34 recipe scaled to the `small` preset (30 M-parameter decoder, 4,096-code VQ):
#           demonstrations of all 34 tasks and training chains collected on every CPU core, VQ and
#           VLA trained on the GPU, the single-task suite and standard chains evaluated with the
#           model on the GPU. Started first: its collection keeps the CPU cores busy while
#   policy  bench/gpu_policy.py: policy-step latency of emu3-1b (stock transformers vs FastDecoder)
#   train   bench/gpu_train.py: training throughput and MFU of emu3-1b
#           run on the GPU beside it.
#
#   bash bench/gpu_all.sh              # on the GPU machine
#   bash bench/gpu_all.sh --smoke      # the same logic on the CPU in a few minutes (tiny sizes; tests)
#
# Each part has its own time limit; a part that fails or runs out of time is recorded as such and
# the others still report. Overridable: GPU_ALL_RECIPE_S, GPU_ALL_POLICY_S, GPU_ALL_TRAIN_S.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
# A bare GPU machine (torch, no package index): unpack what bench/gpu_bundle.sh packed and use it.
if ! "$PY" -c 'import lerobot, pybullet, hydra' 2>/dev/null && [[ -f .gpu/site.tar.gz ]]; then
  mkdir -p /tmp/emu3_vla_site && tar xzf .gpu/site.tar.gz -C /tmp/emu3_vla_site
  export PYTHONPATH="/tmp/emu3_vla_site/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
OUT=${OUT:-runs/gpu_all}          # small result files (JSON, PNG, logs)
WORK=${WORK:-runs/gpu_all_work}   # the recipe's run folder (data, caches, checkpoints): large, left here
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)
WORKERS=${WORKERS:-$(nproc)}
SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1 && shift
start=$(date +%s)

if [[ $SMOKE == 1 ]]; then
  RECIPE_S=${GPU_ALL_RECIPE_S:-900}; POLICY_S=${GPU_ALL_POLICY_S:-120}; TRAIN_S=${GPU_ALL_TRAIN_S:-120}
  RECIPE=(recipe=calvin34 "run_dir=$WORK/recipe" device=cpu workers=2
          "tasks=[open_drawer,lift_red_block_table]" collect.episodes_per_task=2
          vq.steps=5 vq.max_frames=100 train.steps=6 train.batch_size=2 train.checkpoint.every=3
          train.data.cameras.static.size=32 train.data.cameras.gripper.size=16
          eval.per_task=1 eval.chains=1 eval.curve_chains=1 eval.envs=2 eval.videos=1
          eval.random_baseline=false generation.caption_steps=0)
  POLICY=(--preset tiny --device cpu --batch 1 --no-compile --budget-s 30)
  TRAIN=(--preset tiny --device cpu --batch 1 --steps 2)
else
  RECIPE_S=${GPU_ALL_RECIPE_S:-500}; POLICY_S=${GPU_ALL_POLICY_S:-150}; TRAIN_S=${GPU_ALL_TRAIN_S:-90}
  RECIPE=(recipe=calvin34 "run_dir=$WORK/recipe" device=cuda "workers=$WORKERS"
          train.model.preset=small collect.episodes_per_task=20
          vq.steps=1000 vq.batch_size=64 vq.max_frames=1500
          train.steps=1500 train.batch_size=64 train.optim.lr=5e-4 train.checkpoint.every=750
          eval.per_task=3 eval.chains=30 eval.curve_chains=0 eval.envs=4 eval.decoder=static
          eval.task_videos=0 eval.videos=0 eval.random_baseline=false generation.caption_steps=0)
  POLICY=(--preset emu3-1b --batch 1,8 --budget-s 100)
  TRAIN=(--preset emu3-1b --batch 8 --steps 10)
fi

"$PY" - "$OUT/device.json" <<'EOF'
import json, sys, torch
info = {"cuda": torch.cuda.is_available(), "torch": torch.__version__}
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    info.update(name=p.name, memory_gb=round(p.total_memory / 2**30, 1), sm=f"{p.major}.{p.minor}")
json.dump(info, open(sys.argv[1], "w"), indent=2)
print("device:", info)
EOF

run_part() {  # name, seconds, command...: stdout/stderr to $OUT/<name>.log, exit status to $OUT/<name>.status
  local name=$1 seconds=$2; shift 2
  local t0; t0=$(date +%s)
  timeout --kill-after=20 "$seconds" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  echo "{\"exit\": $status, \"seconds\": $(( $(date +%s) - t0 )), \"limit_s\": $seconds}" > "$OUT/$name.status"
  echo "[gpu_all] $name: exit $status after $(( $(date +%s) - t0 )) s (limit $seconds s)"
}

run_part recipe "$RECIPE_S" "$PY" -m emu3_vla.cli demo "${RECIPE[@]}" "$@" &
recipe_pid=$!
run_part policy "$POLICY_S" "$PY" bench/gpu_policy.py "${POLICY[@]}" --json "$OUT/policy.json"
run_part train "$TRAIN_S" "$PY" bench/gpu_train.py "${TRAIN[@]}" --json "$OUT/train.json"
wait "$recipe_pid"

"$PY" - "$OUT" "$(( $(date +%s) - start ))" "$WORK/recipe" <<'EOF'
import json, shutil, sys
from pathlib import Path

out, seconds, run = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
for name in ("results.json", "learning_curve.png", "loss.png", "success_per_task.png"):
    if (run / name).is_file():
        shutil.copyfile(run / name, out / f"recipe_{name}")

def read(name):
    path = out / name
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None

summary = {"seconds": seconds, "device": read("device.json")}
for part in ("policy", "train"):
    summary[part] = {"status": read(f"{part}.status"), "results": read(f"{part}.json")}
results = read("recipe_results.json") or {}
stages = {}  # what finished, also when the recipe ran out of time
for marker in sorted(run.glob("**/stage.json")):
    try:
        record = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        continue
    result = record.get("result") or {}
    stages[str(marker.parent.relative_to(run))] = {
        "seconds": record.get("seconds"),
        **{k: v for k, v in result.items() if k in ("sr@1", "avg_len", "chains", "final_loss", "final_action_acc",
                                                    "steps", "psnr_static", "episodes", "mean_tokens_per_chunk")},
    }
suite, chains = results.get("single_task") or {}, results.get("chains") or {}
summary["recipe"] = {
    "status": read("recipe.status"),
    "sr@1_single_task": suite.get("sr@1"),
    "per_family": suite.get("per_family"),
    "chains": chains,
    "learning_curve": (results.get("learning_curve") or {}).get("points"),
    "failures": (suite.get("failures") or {}).get("counts"),
    "stage_seconds": results.get("stage_seconds"),
    "training": results.get("training"),
    "stages": stages,
}
(out / "gpu_all.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
print(json.dumps(summary, indent=2, default=str)[:4000])
print(f"[gpu_all] wrote {out / 'gpu_all.json'} after {seconds} s")
EOF
