"""Compose docs/results.png for the README: each example input beside its reconstruction's four-view preview with
vertex colours and with the projected texture.

    ./scripts/example.sh && ./scripts/example.sh --no-texture --output out/vertex_colours && .venv/bin/python scripts/readme_figure.py
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from softras.fileio import atomic_write

ROOT = Path(__file__).resolve().parents[1]
TILE = 160
GAP = 8
PREVIEWS = (ROOT / "out" / "vertex_colours", ROOT / "out")  # left: vertex colours; right: textured


def main() -> None:
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    rows = []
    for image in examples:
        previews = [Image.open(folder / f"{image.stem}_preview.png").convert("RGB") for folder in PREVIEWS]
        source = Image.new("RGBA", (TILE, TILE), (255, 255, 255, 255))
        source.alpha_composite(Image.open(image).convert("RGBA").resize((TILE, TILE), Image.Resampling.LANCZOS))
        row = Image.new("RGB", (TILE + sum(GAP + p.width for p in previews), TILE), (255, 255, 255))
        row.paste(source.convert("RGB"), (0, 0))
        x = TILE
        for preview in previews:
            row.paste(preview, (x + GAP, 0))
            x += GAP + preview.width
        rows.append(row)
    figure = Image.new("RGB", (rows[0].width, len(rows) * (TILE + GAP) - GAP), (255, 255, 255))
    for k, row in enumerate(rows):
        figure.paste(row, (0, k * (TILE + GAP)))
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG", optimize=True)
    (ROOT / "docs").mkdir(exist_ok=True)
    print(atomic_write(ROOT / "docs" / "results.png", lambda fh: fh.write(buffer.getvalue())))


if __name__ == "__main__":
    main()
