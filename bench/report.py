#!/usr/bin/env python3
"""Turns the JSON of benches/perf.rs and bench/peer_torch.py (same run) into
the markdown table of BENCHMARKS.md: times, ratio to PyTorch, and how close
each figure is to the machine's limit (the work's FLOPs at the GEMM rate
measured in the same run).

    python3 bench/report.py bench/out/ours.json bench/out/peer.json [--ort bench/out/ort.json]

With --ort (bench/peer_ort.py's JSON), the forward benchmarks get an ONNX
Runtime column and its ratio too.

FLOPs are 2 x the multiply-adds of the convolutions only (Gram matrices,
norms, padding, pooling and element-wise work are not counted):

* VGG19: a backward to the input costs one more forward (no weight
  gradients: VGG is frozen).
* Transform networks: ArchSpec::flops of src/models/spec.rs (the spec's
  convolutions at the size the network runs at).
* Training steps: the network's forward, its backward (weight gradients of
  every conv, input gradients of every conv but the first, whose input is
  the photo), VGG19 on the photos to relu2_2 (content target), and VGG19
  forward + backward to the input to relu4_1 on the painted batch.
"""

import json
import sys

# VGG19 convolutions: (in, out, downsampling), in forward order.
VGG = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4)] + \
      [(256, 256, 4)] * 3 + [(256, 512, 8)] + [(512, 512, 8)] * 3 + [(512, 512, 16)] * 4
RELU_INDEX = {"relu2_2": 3, "relu4_1": 8, "relu4_2": 9, "relu5_1": 12}

# Transform-network presets (src/models/spec.rs).
SPECS = {
    "johnson": "c9s1-32,d64,d128,R128,R128,R128,R128,R128,u64,u32,c9s1-3",
    "fast": "c3s1-8,d16,d32,R32,R32,u8,u8,c3s1-3",
}


def vgg_forward_flops(h, w, upto):
    """Multiply-adds x2 of the convolutions up to and including `upto`."""
    total = 0
    for cin, cout, d in VGG[: RELU_INDEX[upto] + 1]:
        total += 2 * cin * cout * 9 * (h // d) * (w // d)
    return total


def spec_convs(spec, h, w):
    """[(cin, cout, kernel, out_h, out_w)] of every conv, as ArchSpec::convs:
    the input padded up to 2^(halvings) first; odd kernels with reflection
    padding K/2, so a conv's output is ceil(size / stride)."""
    layers = []
    for tok in spec.split(","):
        n, _, tok = tok.rpartition("x")
        kind = tok[0]
        if kind == "c":
            k, rest = tok[1:].split("s")
            s, c = rest.split("-")
            layer = ("c", int(c), int(k), int(s))
        else:
            layer = (kind, int(tok[1:]), 3, 2 if kind == "d" else 1)
        layers += [layer] * (int(n) if n else 1)
    m = 2 ** sum(1 for _, _, _, s in layers if s == 2)
    h, w = -(-h // m) * m, -(-w // m) * m
    out, cin = [], 3
    for kind, c, k, s in layers:
        if kind == "u":
            h, w = 2 * h, 2 * w
        for _ in range(2 if kind == "R" else 1):
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
            out.append((cin if kind != "R" else c, c, k, h, w))
        cin = c
    return out


def net_forward_flops(arch, h, w):
    return sum(2 * ci * co * k * k * oh * ow for ci, co, k, oh, ow in spec_convs(SPECS[arch], h, w))


def train_step_flops(arch, batch, size):
    convs = spec_convs(SPECS[arch], size, size)
    fwd = net_forward_flops(arch, size, size)
    ci, co, k, oh, ow = convs[0]
    first = 2 * ci * co * k * k * oh * ow
    net = fwd + fwd + (fwd - first)  # forward, weight gradients, input gradients
    vgg = vgg_forward_flops(size, size, "relu2_2") + 2 * vgg_forward_flops(size, size, "relu4_1")
    return batch * (net + vgg)


def dream_frame_flops(h, w, steps, octaves=4, scale=1.4, layer="relu4_2"):
    """A frame of Dream::dream_steps: every octave (Dream::octave_sizes)
    takes `steps` forward + backward passes to `layer`."""
    sizes = [(h, w)] + [(round(h / scale**i), round(w / scale**i)) for i in range(1, octaves)]
    sizes = [(a, b) for a, b in sizes if min(a, b) >= 32]
    return steps * sum(2 * vgg_forward_flops(a, b, layer) for a, b in sizes)


WORK = {
    "vgg_fwd_relu5_1_640x480": vgg_forward_flops(480, 640, "relu5_1"),
    "vgg_fwd_bwd_relu4_1_640x480": 2 * vgg_forward_flops(480, 640, "relu4_1"),
    "dream_step_640x480": 2 * vgg_forward_flops(480, 640, "relu4_1"),
    # preset medium: relu4_2, 4 octaves x 10 steps; carried (--carry 0.5): 5 steps
    "dream_frame_640x480": dream_frame_flops(480, 640, 10),
    "dream_frame_carried_640x480": dream_frame_flops(480, 640, 5),
    "gatys_512_100": 100 * 2 * vgg_forward_flops(384, 512, "relu5_1"),
    "johnson_fwd_640x480": net_forward_flops("johnson", 480, 640),
    "johnson_fwd_256x256": net_forward_flops("johnson", 256, 256),
    "fast_fwd_640x480": net_forward_flops("fast", 480, 640),
    "train_step_256_b1": train_step_flops("johnson", 1, 256),
    "train_step_fast_256_b2": train_step_flops("fast", 2, 256),
}


def main():
    args = sys.argv[1:]
    ort = {}
    if "--ort" in args:
        i = args.index("--ort")
        ort = json.load(open(args[i + 1]))
        del args[i:i + 2]
    ours = json.load(open(args[0]))
    peer = json.load(open(args[1]))
    gemm = ours.get("matmul_2048", {}).get("ms")
    peak = 2 * 2048 ** 3 / (gemm / 1e3) if gemm else None
    if peak:
        print(f"GEMM peak (candle f32 matmul 2048^3, same run): {peak / 1e9:.0f} GFLOP/s\n")
    ort_head = " ORT ms | ORT / stylestream |" if ort else ""
    print("| work | stylestream ms | PyTorch ms | PyTorch / stylestream |" + ort_head
          + " GFLOP | stylestream GFLOP/s | % of GEMM peak |")
    print("|---|---|---|---|" + ("---|---|" if ort else "") + "---|---|---|")
    for name, flops in WORK.items():
        if name not in ours:
            continue
        o = ours[name]["ms"]
        p = peer.get(name, {}).get("ms")
        rate = flops / (o / 1e3)
        ratio = f"{p / o:.2f}x" if p else "-"
        pct = f"{100 * rate / peak:.0f}%" if peak else "-"
        pms = f"{p:.0f}" if p else "-"
        ort_cols = ""
        if ort:
            r = ort.get(name, {}).get("ms")
            ort_cols = f" {r:.0f} | {r / o:.2f}x |" if r else " - | - |"
        print(f"| {name} | {o:.0f} | {pms} | {ratio} |{ort_cols} {flops / 1e9:.1f} | "
              f"{rate / 1e9:.1f} | {pct} |")
    mem = [(n, ours[n].get("max_rss_mb"), peer.get(n, {}).get("max_rss_mb")) for n in WORK
           if n in ours and ours[n].get("max_rss_mb")]
    if mem:
        print("\nPeak RSS (MB; a process's peak so far, so only the first benchmark of a run is its own):")
        for n, o, p in mem:
            print(f"- {n}: stylestream {o:.0f}" + (f", PyTorch {p:.0f}" if p else ""))


if __name__ == "__main__":
    main()
