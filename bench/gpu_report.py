#!/usr/bin/env python3
"""The table of scripts/gpu-check.sh: stylestream's GPU benchmarks
(benches/gpu.rs), the PyTorch peer's (bench/peer_torch_gpu.py), the video
conversion and the CUDA tests, as Markdown. Only what ran is shown; a stage
that did not run says so and why.

    python3 bench/gpu_report.py --out OUT/gpu-table.md --gpu "NAME" \\
        [--ours ours.json] [--peer peer.json] [--video video.json] [--tests cuda-tests.log] \\
        [--note TEXT ...]
"""

import argparse
import json
import os
import re

ROWS = (
    ("johnson_fwd_1280x720", "Johnson network forward, 1280x720, batch 1"),
    ("johnson_fwd_1920x1080", "Johnson network forward, 1920x1080, batch 1"),
    ("train_step_256_b8", "training step, Johnson, 256x256, batch 8 (fwd + bwd + Adam)"),
    ("dream_1280x720_3x10", "DeepDream pass 1280x720, 3 octaves x 10 steps, relu4_2"),
    ("video", "video car-detection.mp4 (768x432, 377 frames) end to end, Johnson"),
)


def load(path):
    if path and os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path) as f:
            return json.load(f)
    return {}


def fmt(r):
    if not r or "rate" not in r:
        return None
    if r["unit"] == "steps/s":  # a dream pass: seconds per pass read better
        return f"{r['rate']:.2f} {r['unit']} ({r['ms'] / 1e3:.2f} s/pass)"
    return f"{r['rate']:.2f} {r['unit']} ({r['ms']:.1f} ms)"


def tests_summary(path):
    if not path or not os.path.exists(path):
        return "not run", []
    text = open(path, errors="replace").read()
    m = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", text)
    failed = re.findall(r"^test (\S+) \.\.\. FAILED", text, re.M)
    errs = [float(e) for e in re.findall(r"(?<!L2 )relative error ([0-9.eE+-]+)$", text, re.M)]
    if not m:
        return "did not finish (see cuda-tests.log)", failed
    ok, passed, nfail = m[-1]
    worst = f"; largest GPU/CPU relative error printed {max(errs):.1e}" if errs else ""
    return f"{passed} passed, {nfail} failed{worst}", failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpu", default="unknown GPU")
    ap.add_argument("--ours")
    ap.add_argument("--peer")
    ap.add_argument("--video")
    ap.add_argument("--tests")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    ours, peer, video = load(args.ours), load(args.peer), load(args.video)
    if video:
        ours["video"] = video
    lines = [
        f"## GPU: {args.gpu}",
        "",
        "stylestream (`--features cuda`, candle 0.11.1, f32) beside PyTorch on the same GPU "
        "in the same run (scripts/gpu-check.sh). Medians; ratio > 1: stylestream is faster.",
        "",
        "| work | stylestream | PyTorch (f32) | PyTorch time / stylestream time |",
        "|---|---|---|---|",
    ]
    for key, label in ROWS:
        a, b = ours.get(key), peer.get(key)
        fa, fb = fmt(a), fmt(b)
        if fa is None and fb is None:
            why = (a or {}).get("skipped") or (b or {}).get("skipped") or "not run"
            lines.append(f"| {label} | {why} | | |")
            continue
        ratio = f"{b['ms'] / a['ms']:.2f}x" if fa and fb else ""
        if key == "video" and fa and fb:
            ratio += " (different pipelines: see below)"
        lines.append(f"| {label} | {fa or (a or {}).get('skipped', 'not run')} | "
                     f"{fb or (b or {}).get('skipped', 'not run')} | {ratio} |")
    for key, label in ROWS[:2]:
        t = peer.get(key + "_tf32")
        if t and ours.get(key):
            lines.append(f"| {label}, PyTorch with TF32 convolutions (its default) | "
                         f"{fmt(ours[key])} | {fmt(t)} | {t['ms'] / ours[key]['ms']:.2f}x |")
    summary, failed = tests_summary(args.tests)
    lines += ["", f"CUDA tests (tests/cuda.rs, GPU against CPU): {summary}."]
    if failed:
        lines.append("Failed: " + ", ".join(f"`{t}`" for t in failed) + ".")
    if ours.get("video") and "pipeline" in ours["video"]:
        lines.append(f"Video, stylestream: {ours['video']['pipeline']}.")
    if peer.get("video") and "pipeline" in peer["video"]:
        lines.append(f"Video, PyTorch: {peer['video']['pipeline']}.")
    torch_version = next((r["torch"] for r in peer.values() if isinstance(r, dict) and "torch" in r), None)
    if torch_version:
        lines.append(f"PyTorch {torch_version}.")
    for n in args.note:
        lines.append(n)
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
