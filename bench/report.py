#!/usr/bin/env python3
"""Turns the JSON of benches/perf.rs and bench/peer_torch.py (same run) into
the markdown table of BENCHMARKS.md: times, ratio to PyTorch, and how close
each figure is to the machine's limit (the work's FLOPs at the GEMM rate
measured in the same run).

    python3 bench/report.py bench/out/ours.json bench/out/peer.json
"""

import json
import sys

# VGG19 convolutions: (in, out, downsampling), in forward order.
VGG = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4)] + \
      [(256, 256, 4)] * 3 + [(256, 512, 8)] + [(512, 512, 8)] * 3 + [(512, 512, 16)] * 4
RELU_INDEX = {"relu4_1": 8, "relu4_2": 9, "relu5_1": 12}


def vgg_forward_flops(h, w, upto):
    """Multiply-adds x2 of the convolutions up to and including `upto`."""
    total = 0
    for cin, cout, d in VGG[: RELU_INDEX[upto] + 1]:
        total += 2 * cin * cout * 9 * (h // d) * (w // d)
    return total


# Backward to the input costs about one forward again (no weight gradients).
WORK = {
    "vgg_fwd_relu5_1_640x480": vgg_forward_flops(480, 640, "relu5_1"),
    "vgg_fwd_bwd_relu4_1_640x480": 2 * vgg_forward_flops(480, 640, "relu4_1"),
    "dream_step_640x480": 2 * vgg_forward_flops(480, 640, "relu4_1"),
    "gatys_512_100": 100 * 2 * vgg_forward_flops(384, 512, "relu5_1"),
}


def main():
    ours = json.load(open(sys.argv[1]))
    peer = json.load(open(sys.argv[2]))
    gemm = ours.get("matmul_2048", {}).get("ms")
    peak = 2 * 2048 ** 3 / (gemm / 1e3) if gemm else None
    if peak:
        print(f"GEMM peak (candle f32 matmul 2048^3, same run): {peak / 1e9:.0f} GFLOP/s\n")
    print("| work | stylestream ms | PyTorch ms | PyTorch / stylestream | GFLOP | stylestream GFLOP/s | % of GEMM peak |")
    print("|---|---|---|---|---|---|---|")
    for name, flops in WORK.items():
        if name not in ours:
            continue
        o = ours[name]["ms"]
        p = peer.get(name, {}).get("ms")
        rate = flops / (o / 1e3)
        ratio = f"{p / o:.2f}x" if p else "-"
        pct = f"{100 * rate / peak:.0f}%" if peak else "-"
        print(f"| {name} | {o:.0f} | {p:.0f} | {ratio} | {flops / 1e9:.1f} | {rate / 1e9:.1f} | {pct} |"
              if p else f"| {name} | {o:.0f} | - | - | {flops / 1e9:.1f} | {rate / 1e9:.1f} | {pct} |")


if __name__ == "__main__":
    main()
