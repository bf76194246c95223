#!/usr/bin/env bash
# Trains the models shipped in weights/, resumably: run it again after an
# interruption (Ctrl-C, a reboot, the end of a work session) and each model
# continues from its last checkpoint; finished models are skipped.
#
#   train/train_models.sh [fast|johnson|dream|all]   (default: all)
#
# Environment:
#   DATA      the shared data folder (default: ../shared/data beside the checkout)
#   RUNS      checkpoint folders (default: runs/, not committed)
#   NICE      niceness of the training processes (default: 19, so that
#             interactive work on the machine keeps priority)
#   NO_BUILD  set to 1 to reuse the private binary in RUNS/bin as it is
#             (e.g. while the working tree is mid-change)
#   DEVICE    where to train: cpu (default) or cuda:N (builds with the
#             `cuda` feature)
#   JOHNSON_ITERATIONS, FAST_ITERATIONS
#             iterations per model (defaults 1500 and 1000, what 2 CPU cores
#             allow). On a GPU, Johnson et al.'s schedule is ~40000 at batch
#             4; BENCHMARKS.md ("Training quality against Gatys") shows why
#             the quality target needs it. A finished model is skipped, so
#             move weights/NAME.safetensors away to train it longer; a
#             checkpoint resumes with the new count.
#
# The settings below are what fits this project's CPU budget (2 cores); see
# weights/README.md for what each produced.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
DATA="${DATA:-../shared/data}"
RUNS="${RUNS:-runs}"
NICE="${NICE:-19}"
DEVICE="${DEVICE:-cpu}"
JOHNSON_ITERATIONS="${JOHNSON_ITERATIONS:-1500}"
FAST_ITERATIONS="${FAST_ITERATIONS:-1000}"
STYLES=(starry_night great_wave the_scream composition_vii udnie)

bin="$RUNS/bin/stylestream-train"
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  features=()
  [[ "$DEVICE" == cuda* ]] && features=(--features cuda)
  cargo build --release --bin stylestream-train "${features[@]}"
  mkdir -p "$RUNS/bin"
  # A private copy, so that rebuilding the project never swaps the binary
  # under a running training.
  cp target/release/stylestream-train "$bin.new" && mv "$bin.new" "$bin"
fi

# train NAME ARGS...: trains weights/NAME.safetensors unless it exists.
train() {
  local name="$1"; shift
  local out="weights/$name.safetensors" ckpt="$RUNS/$name.ckpt"
  if [[ -f "$out" ]]; then
    echo "== $name: done ($out)"; return 0
  fi
  local resume=()
  [[ -f "$ckpt/checkpoint.safetensors" ]] && resume=(--resume)
  echo "== $name: training ${resume[*]:-from scratch} (checkpoints in $ckpt)"
  nice -n "$NICE" "$bin" --content-dir "$DATA/photos/train" --val-dir "$DATA/photos/val" \
    --val-count 8 --output "$out" --checkpoint-dir "$ckpt" --device "$DEVICE" \
    --quiet "${resume[@]}" "$@"
}

fast() {
  for s in "${STYLES[@]}"; do
    train "${s}_fast" --arch fast --style "$DATA/styles/$s.jpg" \
      --image-size 256 --batch-size 2 --iterations "$FAST_ITERATIONS" --learning-rate 5e-3 \
      --content-weight 150 --checkpoint-every 100
  done
}

johnson() {
  for s in "${STYLES[@]}"; do
    train "$s" --arch johnson --style "$DATA/styles/$s.jpg" \
      --image-size 256 --batch-size 2 --iterations "$JOHNSON_ITERATIONS" --learning-rate 2e-3 \
      --content-weight 150 --checkpoint-every 100
  done
}

# Dream weights per layer from train/dream_calibration.md. With the linear
# dream term the usable range was narrow (relu4_2: 4 mild, 7-10 collapsed to
# one texture of eyes by iteration 100-150); the log form (part 3) holds a
# strong dream: relu4_2 at 20 paints eyes along recognisable photos through
# 400 iterations. Checkpoints every 50 iterations, so that a collapse shows
# early in validation.png.
dream() {
  local layer_weight layer weight
  for layer_weight in relu4_2:20 relu3_3:30; do
    layer="${layer_weight%%:*}" weight="${layer_weight#*:}"
    train "dream_$layer" --arch fast --objective dream --dream-layers "$layer" \
      --dream-loss log --dream-weight "$weight" \
      --image-size 256 --batch-size 2 --iterations 400 --learning-rate 5e-3 \
      --content-weight 150 --checkpoint-every 50
  done
}

case "$which" in
  fast) fast ;;
  johnson) johnson ;;
  dream) dream ;;
  all) fast; johnson; dream ;;
  *) echo "usage: $0 [fast|johnson|dream|all]" >&2; exit 2 ;;
esac
