#!/usr/bin/env bash
# Installs what stylestream needs on a fresh Debian/Ubuntu machine with Rust
# and Python: system libraries (FFmpeg, libclang for the camera bindings),
# a release build, and the VGG19 weights. Safe to run again: each step
# skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  pkg-config clang libclang-dev nasm
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libswresample-dev libavfilter-dev libavdevice-dev
  ffmpeg python3-pip
)
# scripts/test.sh asks for Xvfb too: the live preview window is tested on a
# virtual X server (libX11 and libXcursor are loaded at run time).
if [ "${STYLESTREAM_TEST_TOOLS:-0}" = 1 ]; then
  APT_PACKAGES+=(xvfb libx11-6 libxcursor1)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "setup: building stylestream (release)" >&2
cargo build --release --bins

echo "setup: fetching VGG19 weights" >&2
./target/release/stylestream fetch-vgg
