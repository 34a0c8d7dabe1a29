"""Synthetic pages at exactly 768 visual tokens (896x672 px, no resampling): text-like stripes, boxes, a
gradient and noise, seeded. usage: python make_pages.py OUT_DIR N"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(n):
    img = Image.new("RGB", (672, 896), "white")
    d = ImageDraw.Draw(img)
    y = 40
    while y < 860:
        x = 40
        while x < 630:
            w = int(rng.integers(10, 60))
            d.rectangle([x, y, min(x + w, 632), y + 9], fill=tuple(int(c) for c in rng.integers(0, 90, 3)))
            x += w + int(rng.integers(5, 12))
        y += int(rng.integers(16, 40))
    for _ in range(3):
        x0, y0 = int(rng.integers(0, 500)), int(rng.integers(0, 700))
        d.rectangle([x0, y0, x0 + int(rng.integers(40, 170)), y0 + int(rng.integers(40, 190))],
                    outline=tuple(int(c) for c in rng.integers(0, 255, 3)), width=3)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 8, (896, 672, 3))
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(out / f"synthetic-{i:04d}.png")
