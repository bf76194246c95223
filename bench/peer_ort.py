#!/usr/bin/env python3
"""ONNX Runtime peer for the transform-network forward benchmarks: the same
networks as bench/peer_torch.py (TransformNet, built from the same spec
strings), exported to ONNX at the benchmark's size and run by ONNX Runtime's
CPU provider with all graph optimisations on. Issue 3 asks the forward pass
to "aim at ONNX Runtime", which fuses and reorders a static graph ahead of
time: the strongest CPU peer for inference we can install here.

    bench/.venv/bin/python bench/peer_ort.py --threads 2 --json bench/out/ort.json

Writes the same JSON shape as peer_torch.py (median `ms`, `runs`, ...);
bench/report.py adds it as a column when given `--ort FILE`. Needs
`pip install onnxruntime onnx` in the venv (bench/setup_peer.sh does it).
"""

import argparse
import io
import json
import os
import statistics
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_torch  # noqa: E402  (the networks and the timing loop)

# name -> (preset, height, width): the forward benchmarks of benches/perf.rs.
BENCHMARKS = {
    "johnson_fwd_640x480": ("johnson", 480, 640),
    "johnson_fwd_256x256": ("johnson", 256, 256),
    "fast_fwd_640x480": ("fast", 480, 640),
}


def session(arch, h, w, threads):
    """An ORT session of the `arch` network exported at 1x3xHxW."""
    import onnxruntime as ort

    net = peer_torch.TransformNet(peer_torch.SPECS[arch]).eval()
    buf = io.BytesIO()
    # The exporter's notes on constant folding of the crop are harmless.
    warnings.filterwarnings("ignore", category=UserWarning)
    with torch.no_grad():
        # The TorchScript exporter: no onnxscript needed, and the graph
        # (pads, instance norms, resize) is the same one the dynamo exporter
        # writes for this network.
        torch.onnx.export(net, torch.rand(1, 3, h, w), buf, input_names=["rgb"],
                          output_names=["out"], opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--only", metavar="NAME[,NAME]",
                    help="comma-separated subset of: " + ", ".join(BENCHMARKS)
                    + " (other names are ignored, so bench/run.sh can pass its list)")
    args = ap.parse_args()
    import onnxruntime as ort

    names = list(BENCHMARKS)
    if args.only:
        names = [n for n in (s.strip() for s in args.only.split(",")) if n in BENCHMARKS]
    print(f"onnxruntime {ort.__version__} | threads {args.threads}", flush=True)
    results = {}
    for name in names:
        arch, h, w = BENCHMARKS[name]
        print(f"running {name} ... (1-min load average {os.getloadavg()[0]:.2f})", flush=True)
        sess = session(arch, h, w, args.threads)
        frame = {"rgb": torch.rand(1, 3, h, w).numpy()}
        runs = peer_torch.time_runs(args.repeat, lambda: sess.run(None, frame))
        results[name] = {"ms": statistics.median(runs), "min_ms": min(runs), "runs": runs,
                         "onnxruntime": ort.__version__, "threads": args.threads,
                         "max_rss_mb": peer_torch.max_rss_mb()}
        print(f"{name:<30} {results[name]['ms']:>9.1f} ms", flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
