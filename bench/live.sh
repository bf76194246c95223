#!/usr/bin/env bash
# The live pipeline's numbers for BENCHMARKS.md ("Live pipeline"): a 30 fps
# 640x480 clip played as a camera (--realtime --loop) through a style model
# into one output at a time, frames shown per second and capture-to-display
# latency as the session's summary reports them.
#
#   bench/live.sh [MODEL] [SIZE...]     # default: starry_night_fast, 640 320
#
# Outputs measured: the window (under Xvfb, when installed), the MJPEG
# stream with one client reading it (curl), and an H.264 recording. Needs a
# release build (scripts/setup.sh) and an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-starry_night_fast}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(640 320)
BIN=${STYLESTREAM:-target/release/stylestream}
CLIP=${CLIP:-../shared/data/video/friday.mp4}
SECONDS_EACH=${SECONDS_EACH:-15}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; [ -n "${XPID:-}" ] && kill "$XPID" 2>/dev/null || true' EXIT

run() { # label, extra args...
  local label=$1
  shift
  "$BIN" stylize --input "$CLIP" --realtime --loop --model "$MODEL" --device cpu \
    --duration "$SECONDS_EACH" --no-overlay "$@" 2>"$OUT/log" >/dev/null
  echo "== $label"
  grep -E "frames captured|frames shown" "$OUT/log" | sed 's/^live: /   /'
}

for size in "${SIZES[@]}"; do
  if command -v Xvfb >/dev/null; then
    Xvfb :95 -screen 0 1024x768x24 -nolisten tcp >/dev/null 2>&1 &
    XPID=$!
    sleep 1
    DISPLAY=:95 run "size $size, window (Xvfb)" --size "$size"
    kill "$XPID"
    XPID=
  fi
  (sleep 2; curl -s -m $((SECONDS_EACH - 3)) -o /dev/null http://127.0.0.1:8097/stream.mjpg || true) &
  run "size $size, --serve with one client" --size "$size" --serve 127.0.0.1:8097
  wait
  run "size $size, --output rec.mp4" --size "$size" --output "$OUT/rec.mp4"
  rm -f "$OUT/rec.mp4"
done
