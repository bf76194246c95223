#!/usr/bin/env bash
# Quality of the shipped models against Gatys optimisation, by the losses
# both minimise (`stylestream evaluate`), on validation photos at 512 px:
#
#   bench/quality.sh [STYLE ...]     (default: the five shipped styles)
#
# For each style and each of the first $PHOTOS validation photos (default 1:
# Gatys takes ~7 minutes per 512 px photo on a 2-core CPU) it runs
#   - stylestream gatys, 300 L-BFGS steps, with the training losses' layers
#     and weights (content relu2_2 x150, style relu1_1..relu4_1 x100, tv x1,
#     painting at 512 px);
#   - stylestream stylize with the johnson model STYLE and the fast model
#     STYLE_fast (when present);
# then evaluates all three with the same losses, and writes
# bench/out/quality.jsonl and a Markdown table bench/out/quality.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data}"
PHOTOS="${PHOTOS:-1}"
OUT=bench/out/quality
mkdir -p "$OUT"
styles=("$@")
[[ ${#styles[@]} -eq 0 ]] && styles=(starry_night great_wave the_scream composition_vii udnie)
cargo build --release --bin stylestream
ss=target/release/stylestream
LOSSES=(--content-layers relu2_2 --style-layers relu1_1,relu2_1,relu3_1,relu4_1
        --content-weight 150 --style-weight 100 --tv-weight 1)
mapfile -t photos < <(ls "$DATA/photos/val"/*.jpg | sort | head -n "$PHOTOS")
: > "$OUT/../quality.jsonl"
for style in "${styles[@]}"; do
  painting="$DATA/styles/$style.jpg"
  for photo in "${photos[@]}"; do
    p=$(basename "${photo%.*}")
    gatys="$OUT/gatys_${style}_$p.png"
    if [[ ! -f "$gatys" ]]; then
      "$ss" gatys --content "$photo" --style "$painting" --output "$gatys" \
        --size 512 --style-size 512 --steps 300 "${LOSSES[@]}"
    fi
    for kind in gatys johnson fast; do
      case $kind in
        gatys) img="$gatys" ;;
        johnson) model="$style" ;;
        fast) model="${style}_fast" ;;
      esac
      if [[ $kind != gatys ]]; then
        [[ -f "weights/$model.safetensors" ]] || continue
        img="$OUT/${kind}_${style}_$p.png"
        "$ss" stylize --input "$photo" --output "$img" --model "$model" --size 512 >/dev/null
      fi
      json=$("$ss" evaluate --content "$photo" --style "$painting" --image "$img" \
        --size 512 --style-size 512 "${LOSSES[@]}" --json)
      echo "{\"style\":\"$style\",\"photo\":\"$p\",\"method\":\"$kind\",\"losses\":$json}" \
        | tee -a "$OUT/../quality.jsonl"
    done
  done
done
python3 - "$OUT/../quality.jsonl" > "$OUT/../quality.md" <<'PY'
import json, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1])]
by = defaultdict(dict)
for r in rows:
    by[(r["style"], r["photo"])][r["method"]] = r["losses"]
print("| style | photo | Gatys style | Gatys content | johnson style (x Gatys) | johnson content (x Gatys) | fast style (x johnson) | fast content (x johnson) |")
print("|---|---|---|---|---|---|---|---|")
def cell(m, ref, key):
    if m is None: return "–"
    return f"{m[key]:.3g} ({m[key] / ref[key]:.2f}x)" if ref else f"{m[key]:.3g}"
for (style, photo), m in sorted(by.items()):
    g, j, f = m.get("gatys"), m.get("johnson"), m.get("fast")
    print(f"| {style} | {photo} | {g['style']:.3g} | {g['content']:.3g} | {cell(j, g, 'style')} | {cell(j, g, 'content')} | {cell(f, j, 'style')} | {cell(f, j, 'content')} |")
PY
cat "$OUT/../quality.md"
