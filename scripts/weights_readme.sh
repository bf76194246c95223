#!/usr/bin/env bash
# Regenerates weights/README.md from the models in weights/: a table per
# model (style, preset, iterations, images seen, training time and machine,
# final validation losses, all read from the model's own metadata) and a
# picture of each model's result on one frame of friday.mp4
# (docs/images/friday_frame.jpg, public domain), written small to
# weights/pictures/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin stylestream
mkdir -p weights/pictures
for m in weights/*.safetensors; do
  [[ -e "$m" ]] || continue
  name=$(basename "${m%.safetensors}")
  target/release/stylestream stylize --input docs/images/friday_frame.jpg \
    --output "weights/pictures/$name.jpg" --model "$m" --size 320 >/dev/null
  # A dream model is shown beside the iterative dream of the same layer on
  # the same frame (`stylestream dream`, medium preset, fixed seed): what
  # the network learned to do in one pass against what 40 gradient steps do.
  layers=$(python3 - "$m" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    m = json.loads(f.read(n)).get("__metadata__", {})
if m.get("stylestream.objective") == "dream":
    c = json.loads(m.get("stylestream.training", "{}")).get("config", {})
    print(",".join(c.get("dream_layers", [])))
PY
)
  if [[ -n "$layers" ]]; then
    target/release/stylestream dream --input docs/images/friday_frame.jpg \
      --output "weights/pictures/${name}_iterative.jpg" --layers "$layers" --size 320 \
      --seed 0 >/dev/null
  fi
done
python3 - > weights/README.md <<'PY'
import glob, json, os, struct
machine = "2-core AMD EPYC (AVX2, FMA), CPU only"
def meta(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})
print("""# weights/

Trained feed-forward networks, so that `stylestream stylize --model NAME`
finds them (`stylestream models` lists them). Each file is safetensors with
its architecture, style, objective and training configuration in the
metadata. Made by `train/train_models.sh` (which resumes across sessions)
from the public-domain paintings in `../shared/data/styles/` and the 612
training photos of `../shared/data/photos/train`; this page by
`scripts/weights_readme.sh`.

The VGG19 loss network is *not* kept here: `stylestream fetch-vgg` downloads
and converts it to `~/.local/share/stylestream/vgg19.safetensors`.

Pictures: each model on a frame of *His Girl Friday* (1940, public domain),
320 px, `docs/images/friday_frame.jpg`:

![frame](../docs/images/friday_frame.jpg)
""")
for path in sorted(glob.glob("weights/*.safetensors")):
    name = os.path.basename(path)[: -len(".safetensors")]
    m = meta(path)
    t = json.loads(m.get("stylestream.training", "{}"))
    c = t.get("config", {})
    v = t.get("final_validation") or {}
    secs = t.get("training_seconds", 0)
    print(f"## {name}\n")
    print("| | |\n|---|---|")
    rows = [
        ("objective", m.get("stylestream.objective")),
        ("style", m.get("stylestream.style") if m.get("stylestream.objective") != "dream" else "none (DeepDream objective)"),
        ("preset", f"`{m.get('stylestream.preset')}` (`{m.get('stylestream.arch')}`)"),
        ("iterations", t.get("iterations")),
        ("images seen", f"{t.get('images_seen')} ({c.get('image_size')} px crops, batch {c.get('batch_size')})"),
        ("training time", f"{secs / 3600:.2f} h on {machine}"),
        ("losses (weights)", f"content {c.get('content_layers')} x{c.get('content_weight')}, "
            + (f"dream {c.get('dream_layers')} x{c.get('dream_weight')} ({c.get('dream_loss', 'linear')} form)" if m.get('stylestream.objective') == 'dream'
               else f"style {c.get('style_layers')} x{c.get('style_weight')}") + f", tv x{c.get('tv_weight')}"),
        ("optimiser", f"Adam, lr {c.get('learning_rate')} decaying to x{c.get('lr_decay')}, seed {c.get('seed')}"),
        ("final validation losses (8 photos, weighted)", ", ".join(f"{k} {v[k]:.4g}" for k in ("content", "style", "dream", "tv", "total") if k in v and v[k])),
    ]
    for k, val in rows:
        print(f"| {k} | {val} |")
    if m.get("stylestream.objective") == "dream":
        layers = ",".join(c.get("dream_layers", []))
        print(f"\n| this network, one pass | iterative DeepDream of {layers} (`stylestream dream --layers {layers} --size 320`, medium preset) |")
        print("|---|---|")
        print(f"| ![{name}](pictures/{name}.jpg) | ![{name} iterative](pictures/{name}_iterative.jpg) |\n")
    else:
        print(f"\n![{name}](pictures/{name}.jpg)\n")
# The models train/train_models.sh makes that are not here yet.
styles = ["starry_night", "great_wave", "the_scream", "composition_vii", "udnie"]
wanted = [n for s in styles for n in (f"{s}_fast", s)] + ["dream_relu4_2", "dream_relu3_3"]
missing = [n for n in wanted if not os.path.exists(f"weights/{n}.safetensors")]
if missing:
    print("## Still training\n")
    print("Not here yet: " + ", ".join(f"`{n}`" for n in missing) + ". "
          "`train/train_models.sh` trains them one after another (a `johnson` "
          "model takes about an hour on the 2-core machine) and resumes from "
          "`runs/NAME.ckpt/` when run again.")
PY
echo "wrote weights/README.md"
