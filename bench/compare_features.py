#!/usr/bin/env python3
"""Checks `stylestream features` against PyTorch running the same VGG19.

Writes a PNG (lossless, so both sides decode the same pixels), runs
`stylestream features` on it, computes the same layers with the PyTorch peer
network (peer_torch.py) and prints the relative error of each layer.

    bench/.venv/bin/python bench/compare_features.py [--image PHOTO] [--size 256]
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_torch  # noqa: E402

LAYERS = ["relu1_1", "relu2_2", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=np.float32).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="../shared/data/photos/val/101087.jpg")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--binary", default="target/release/stylestream")
    ap.add_argument("--wheel", default=peer_torch.DEFAULT_WHEEL)
    args = ap.parse_args()

    img = Image.open(args.image).convert("RGB")
    img.thumbnail((args.size, args.size), Image.LANCZOS)
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "input.png")
        img.save(png)
        feats = os.path.join(tmp, "feats.safetensors")
        subprocess.run([args.binary, "features", "--input", png, "--layers", ",".join(LAYERS),
                        "--output", feats, "--device", "cpu"], check=True)
        ours = read_safetensors(feats)

    ns = argparse.Namespace(vgg_bin=None, wheel=args.wheel)
    vgg = peer_torch.VGG19Features(peer_torch.dequantize(peer_torch.load_state(peer_torch.open_vgg_bin(ns))))
    rgb = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        theirs = vgg(peer_torch.to_vgg_input(rgb), LAYERS)
    worst = 0.0
    print(f"{'layer':<8} {'shape':<20} {'max |diff| / max |torch|':>26}")
    for name in LAYERS:
        t = theirs[name].numpy()
        o = ours[name]
        assert o.shape == t.shape, (name, o.shape, t.shape)
        rel = float(np.abs(o - t).max() / max(np.abs(t).max(), 1e-12))
        worst = max(worst, rel)
        print(f"{name:<8} {str(t.shape):<20} {rel:>26.2e}")
    print(f"worst relative error {worst:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
