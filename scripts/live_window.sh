#!/usr/bin/env bash
# The live preview window without a monitor or camera: starts a virtual X
# server (Xvfb), plays a video through `stylestream stylize --realtime` into
# the window, presses keys in it with xdotool (V split screen, S screenshot,
# Q quit) and grabs the screen with FFmpeg's x11grab. Leaves in OUTDIR (default
# live-window/): screen.png (the grabbed screen), the S key's screenshot, and
# log.txt (the session's log: frames/s and latency of the window).
#
#   scripts/live_window.sh [MODEL] [VIDEO] [OUTDIR]
#
# Needs: apt-get install xvfb xdotool ffmpeg; a release build
# (scripts/setup.sh); MODEL defaults to starry_night_fast.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-starry_night_fast}
CLIP=${2:-../shared/data/video/friday.mp4}
OUT=${3:-live-window}
BIN=${STYLESTREAM:-target/release/stylestream}
for t in Xvfb xdotool ffmpeg; do
  command -v "$t" >/dev/null || { echo "live_window.sh: needs $t (apt-get install xvfb xdotool ffmpeg)" >&2; exit 1; }
done
mkdir -p "$OUT"
DISP=:97
Xvfb "$DISP" -screen 0 800x600x24 -nolisten tcp >/dev/null 2>&1 &
XPID=$!
trap 'kill "$XPID" 2>/dev/null || true' EXIT
sleep 1

DISPLAY=$DISP "$BIN" stylize --input "$CLIP" --realtime --loop --model "$MODEL" \
  --duration 20 --screenshot-dir "$OUT" 2>"$OUT/log.txt" &
SPID=$!
key() {
  local win
  win=$(DISPLAY=$DISP xdotool search --name '^stylestream' | head -1)
  # No window manager: give the window the focus, then type (XTEST).
  DISPLAY=$DISP xdotool windowfocus --sync "$win" key "$1"
}
sleep 4
key v          # split screen: original | stylized
sleep 2
key s          # screenshot of the frame shown
sleep 1
ffmpeg -loglevel error -y -f x11grab -video_size 800x600 -i "$DISP" -frames:v 1 "$OUT/screen.png"
key q
wait "$SPID"
cat "$OUT/log.txt" >&2
ls "$OUT"
