#!/usr/bin/env bash
# Frame-to-frame coherence of dreams on video (issue: dreams in motion):
# dreams the first $FRAMES frames of a clip with --carry 0 (every frame
# afresh) and with --carry $CARRY, and prints for each the mean absolute
# difference between consecutive output frames divided by that of the
# input frames (1 = the output changes as much as the scene; higher =
# the patterns boil).
#
#   bench/dream_coherence.sh [CLIP]   (default ../shared/data/video/car-detection.mp4)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIP="${1:-../shared/data/video/car-detection.mp4}"
FRAMES="${FRAMES:-30}"
CARRY="${CARRY:-0.5}"
SIZE="${SIZE:-320}"
OUT=bench/out/coherence
rm -rf "$OUT" && mkdir -p "$OUT/input"
cargo build --release --bin stylestream
ffmpeg -v error -i "$CLIP" -frames:v "$FRAMES" -vf "scale=$SIZE:-2" "$OUT/clip.mp4"
ffmpeg -v error -i "$OUT/clip.mp4" "$OUT/input/frame_%06d.png"
for carry in 0 "$CARRY"; do
  mkdir -p "$OUT/carry_$carry"
  /usr/bin/time -f "carry $carry: %e s" target/release/stylestream dream --input "$OUT/clip.mp4" \
    --output "$OUT/carry_$carry/" --dream-preset video --carry "$carry" 2>&1 | tail -2
done
python3 - "$OUT" "$CARRY" <<'PY'
import sys, zlib, struct, glob
def png(path):
    # Minimal PNG reader (8-bit RGB/RGBA, no interlace) so no packages are needed.
    data = open(path, "rb").read()
    pos, idat, w, h, ctype = 8, b"", 0, 0, 2
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]; t = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]; pos += 12 + n
        if t == b"IHDR": w, h, _, ctype = struct.unpack(">IIBB", body[:10])
        elif t == b"IDAT": idat += body
    ch = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat); stride = w * ch
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0; b = prev[i]; c = prev[i - ch] if i >= ch else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line; prev = line
    return out
def change(folder):
    frames = [png(p) for p in sorted(glob.glob(folder + "/*.png"))]
    d = [sum(abs(x - y) for x, y in zip(a, b)) / len(a) for a, b in zip(frames, frames[1:])]
    return sum(d) / len(d)
out, carry = sys.argv[1], sys.argv[2]
base = change(out + "/input")
for c in ("0", carry):
    r = change(f"{out}/carry_{c}") / base
    print(f"carry {c}: output frame-to-frame change = {r:.2f}x the input's")
PY
