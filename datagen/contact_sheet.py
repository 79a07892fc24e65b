"""A contact sheet of a shape pack: a few shapes of each category (or factory) rendered side by side, labelled.

    python -m datagen.contact_sheet --shapes cache/infinigen_shapes.npz --out docs/infinigen-shapes.png

Each tile is the engine's render of one shape from the standard training camera (elevation 30, azimuth 30 unless
``--azimuth``), one row per category (or per model-id prefix with ``--by factory``), ``--per-row`` shapes a row
picked at random with ``--seed``. The PNG is written atomically.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from softras.data import Shapes, render_views
from softras.fileio import atomic_write

LABEL_WIDTH = 110


def groups(shapes: Shapes, by: str) -> dict[str, np.ndarray]:
    """Rows of the sheet: name -> model indices, sorted by name."""
    keys = shapes.category if by == "category" else np.array([m.rsplit("_", 1)[0] for m in shapes.model_id.astype(str)])
    return {k: np.nonzero(keys == k)[0] for k in sorted(set(keys.tolist()))}


def sheet(shapes: Shapes, by: str, per_row: int, size: int, azimuth: float, seed: int) -> Image.Image:
    """The contact sheet as an RGB picture on white."""
    rng = np.random.default_rng(seed)
    rows = groups(shapes, by)
    out = Image.new("RGB", (LABEL_WIDTH + per_row * size, len(rows) * size), "white")
    draw = ImageDraw.Draw(out)
    for r, (name, members) in enumerate(rows.items()):
        picked = np.sort(rng.choice(members, size=min(per_row, len(members)), replace=False))
        tiles = render_views(shapes, picked, [30.0], [azimuth], size=size)[:, 0]
        for c, tile in enumerate(tiles):
            rgba = Image.fromarray(tile, "RGBA")
            out.paste(rgba, (LABEL_WIDTH + c * size, r * size), rgba)
        draw.text((6, r * size + size // 2 - 12), f"{name}\n{len(members)} shapes", fill="black")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--by", choices=("category", "factory"), default="category")
    parser.add_argument("--per-row", type=int, default=8)
    parser.add_argument("--size", type=int, default=80, help="tile size in pixels")
    parser.add_argument("--azimuth", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    picture = sheet(Shapes.load(args.shapes), args.by, args.per_row, args.size, args.azimuth, args.seed)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    print(atomic_write(args.out, lambda fh: fh.write(buffer.getvalue())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
