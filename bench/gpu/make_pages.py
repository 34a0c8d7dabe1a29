"""Synthetic pages at exactly 768 visual tokens, no resampling: text-like stripes, boxes, a gradient and noise,
seeded. 672x896 px (24 x 32 cells of 28 px: ColQwen2.5) by default; WIDTH HEIGHT for other cells (768 1024 = 24 x 32
cells of 32 px: ColQwen3 and ColQwen3.5). The default size gives the same files as before the size arguments.
usage: python make_pages.py OUT_DIR N [WIDTH HEIGHT]"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

out, n = Path(sys.argv[1]), int(sys.argv[2])
width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (672, 896)
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(n):
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    y = 40
    while y < height - 36:
        x = 40
        while x < width - 42:
            w = int(rng.integers(10, 60))
            d.rectangle([x, y, min(x + w, width - 40), y + 9], fill=tuple(int(c) for c in rng.integers(0, 90, 3)))
            x += w + int(rng.integers(5, 12))
        y += int(rng.integers(16, 40))
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width - 172)), int(rng.integers(0, height - 196))
        d.rectangle([x0, y0, x0 + int(rng.integers(40, 170)), y0 + int(rng.integers(40, 190))],
                    outline=tuple(int(c) for c in rng.integers(0, 255, 3)), width=3)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 8, (height, width, 3))
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(out / f"synthetic-{i:04d}.png")
