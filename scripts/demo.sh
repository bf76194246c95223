#!/usr/bin/env bash
# The main job on a still image: paints a photo in the style of a painting
# (Gatys) and dreams on it, after installing what is missing.
#   scripts/demo.sh [PHOTO] [PAINTING] [OUTDIR]
# Defaults use the shared data set beside the checkout when present.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
PHOTO=${1:-$DATA/photos/val/101087.jpg}
STYLE=${2:-$DATA/styles/starry_night.jpg}
OUT=${3:-demo-output}
for f in "$PHOTO" "$STYLE"; do
  [ -f "$f" ] || { echo "demo: $f not found; usage: scripts/demo.sh PHOTO PAINTING [OUTDIR]" >&2; exit 2; }
done
scripts/setup.sh
mkdir -p "$OUT"
./target/release/stylestream gatys --content "$PHOTO" --style "$STYLE" --size 256 --steps 150 --output "$OUT/gatys.jpg"
./target/release/stylestream dream --input "$PHOTO" --size 320 --output "$OUT/dream.jpg"
echo "demo: results in $OUT/"
