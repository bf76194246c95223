#!/usr/bin/env bash
# Regenerates the pictures in README.md from public-domain inputs only: a
# frame of friday.mp4 (His Girl Friday, 1940) and Starry Night (1889).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
BIN=./target/release/stylestream
mkdir -p docs/images
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ffmpeg -loglevel error -y -ss 2 -i "$DATA/video/friday.mp4" -frames:v 1 "$tmp/frame.png"
$BIN gatys --content "$tmp/frame.png" --style "$DATA/styles/starry_night.jpg" --size 320 --steps 200 \
  --output docs/images/friday_gatys_starry_night.jpg
$BIN gatys --content "$tmp/frame.png" --style "$DATA/styles/the_scream.jpg" --size 320 --steps 100 \
  --preserve-color --output docs/images/friday_gatys_scream_preserve_color.jpg
$BIN dream --input "$tmp/frame.png" --size 320 --output docs/images/friday_dream_relu4_2.jpg
$BIN dream --input "$tmp/frame.png" --size 320 --layers relu3_3 --octaves 3 \
  --output docs/images/friday_dream_relu3_3.jpg
cp "$tmp/frame.png" "$tmp/frame_small.png"
ffmpeg -loglevel error -y -i "$tmp/frame.png" -vf scale=320:-1 docs/images/friday_frame.jpg
