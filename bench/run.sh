#!/usr/bin/env bash
# Runs stylestream's benchmarks and the PyTorch and ONNX Runtime peers in one go, on an idle
# machine, and prints the table for BENCHMARKS.md.
#   bench/run.sh [--only name,name] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
bench/setup_peer.sh >/dev/null
cargo bench --bench perf -- --json bench/out/ours.json "$@"
bench/.venv/bin/python bench/peer_torch.py --threads "$(nproc)" --json bench/out/peer.json "$@"
bench/.venv/bin/python bench/peer_ort.py --threads "$(nproc)" --json bench/out/ort.json "$@"
python3 bench/report.py bench/out/ours.json bench/out/peer.json --ort bench/out/ort.json
