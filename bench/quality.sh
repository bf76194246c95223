#!/usr/bin/env bash
# Quality of the shipped models against Gatys optimisation, by the losses
# both minimise (`stylestream evaluate`), on validation photos at 512 px:
#
#   bench/quality.sh [STYLE ...]     (default: the five shipped styles)
#
# For each style it runs, on the first $PHOTOS validation photos (default 1:
# Gatys takes ~7 minutes per 512 px photo on a 2-core CPU),
#   - stylestream gatys, 300 L-BFGS steps, with the training losses' layers
#     and weights (content relu2_2 x150, style relu1_1..relu4_1 x100, tv x1,
#     painting at 512 px), cached in bench/out/quality/;
# and on the first $NET_PHOTOS (default 8; seconds per photo)
#   - stylestream stylize with the johnson model STYLE and the fast model
#     STYLE_fast (when present);
# then evaluates every picture with the same losses. It writes
# bench/out/quality.jsonl (the rows of the styles scored now replace theirs;
# other styles' rows stay) and a Markdown report bench/out/quality.md: a row
# per style and photo, then per style the geometric mean of the ratios
# (johnson / Gatys over the Gatys photos, fast / johnson over all).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data}"
PHOTOS="${PHOTOS:-1}"
NET_PHOTOS="${NET_PHOTOS:-8}"
(( NET_PHOTOS < PHOTOS )) && NET_PHOTOS=$PHOTOS
OUT=bench/out/quality
mkdir -p "$OUT"
styles=("$@")
[[ ${#styles[@]} -eq 0 ]] && styles=(starry_night great_wave the_scream composition_vii udnie)
cargo build --release --bin stylestream
ss=target/release/stylestream
LOSSES=(--content-layers relu2_2 --style-layers relu1_1,relu2_1,relu3_1,relu4_1
        --content-weight 150 --style-weight 100 --tv-weight 1)
mapfile -t photos < <(ls "$DATA/photos/val"/*.jpg | sort | head -n "$NET_PHOTOS")

# score STYLE PHOTO METHOD IMAGE: one JSON line of the losses of IMAGE.
score() {
  local json
  json=$("$ss" evaluate --content "$2" --style "$DATA/styles/$1.jpg" --image "$4" \
    --size 512 --style-size 512 "${LOSSES[@]}" --json)
  echo "{\"style\":\"$1\",\"photo\":\"$(basename "${2%.*}")\",\"method\":\"$3\",\"losses\":$json}" \
    | tee -a "$OUT/../quality.jsonl"
}

# Rows of styles not being scored now are kept, so that one style can be
# rescored alone (`bench/quality.sh udnie`) without losing the others.
touch "$OUT/../quality.jsonl"
python3 - "$OUT/../quality.jsonl" "${styles[@]}" <<'PY'
import json, sys
path, redo = sys.argv[1], set(sys.argv[2:])
kept = [l for l in open(path) if l.strip() and json.loads(l)["style"] not in redo]
open(path, "w").writelines(kept)
PY
for style in "${styles[@]}"; do
  painting="$DATA/styles/$style.jpg"
  for i in "${!photos[@]}"; do
    photo="${photos[$i]}"
    p=$(basename "${photo%.*}")
    if (( i < PHOTOS )); then
      gatys="$OUT/gatys_${style}_$p.png"
      if [[ ! -f "$gatys" ]]; then
        "$ss" gatys --content "$photo" --style "$painting" --output "$gatys" \
          --size 512 --style-size 512 --steps 300 "${LOSSES[@]}"
      fi
      score "$style" "$photo" gatys "$gatys"
    fi
    for kind in johnson fast; do
      model="$style"
      [[ $kind == fast ]] && model="${style}_fast"
      [[ -f "weights/$model.safetensors" ]] || continue
      img="$OUT/${kind}_${style}_$p.png"
      "$ss" stylize --input "$photo" --output "$img" --model "$model" --size 512 >/dev/null
      score "$style" "$photo" "$kind" "$img"
    done
  done
done
python3 - "$OUT/../quality.jsonl" > "$OUT/../quality.md" <<'PY'
import json, math, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1])]
by = defaultdict(dict)
for r in rows:
    by[(r["style"], r["photo"])][r["method"]] = r["losses"]
def num(m, key):
    return "–" if m is None else f"{m[key]:.3g}"
print("| style | photo | Gatys style | Gatys content | johnson style (x Gatys) | johnson content (x Gatys) | fast style (x johnson) | fast content (x johnson) |")
print("|---|---|---|---|---|---|---|---|")
for (style, photo), m in sorted(by.items()):
    g, j, f = m.get("gatys"), m.get("johnson"), m.get("fast")
    cells = [num(g, "style"), num(g, "content")]
    for model, ref in ((j, g), (f, j)):
        for key in ("style", "content"):
            ratio = f" ({model[key] / ref[key]:.2f}x)" if model and ref else ""
            cells.append(num(model, key) + ratio)
    print(f"| {style} | {photo} | " + " | ".join(cells) + " |")

# Geometric means of the ratios per style: the photos' losses differ by up
# to an order of magnitude, so an arithmetic mean would be a few photos'.
def gmean(pairs, key):
    xs = [a[key] / b[key] for a, b in pairs]
    if not xs:
        return "–"
    mean = math.exp(sum(map(math.log, xs)) / len(xs))
    return f"{mean:.2f}x (n={len(xs)}, {min(xs):.2f}-{max(xs):.2f})"
print()
print("| style | johnson style / Gatys | johnson content / Gatys | fast style / johnson | fast content / johnson |")
print("|---|---|---|---|---|")
for style in sorted({s for s, _ in by}):
    ms = [m for (s, _), m in by.items() if s == style]
    jg = [(m["johnson"], m["gatys"]) for m in ms if "johnson" in m and "gatys" in m]
    fj = [(m["fast"], m["johnson"]) for m in ms if "fast" in m and "johnson" in m]
    print(f"| {style} | {gmean(jg, 'style')} | {gmean(jg, 'content')} | {gmean(fj, 'style')} | {gmean(fj, 'content')} |")
PY
cat "$OUT/../quality.md"
