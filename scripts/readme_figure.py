"""Compose docs/results.png for the README: each example input beside its reconstruction's four-view preview.

    ./scripts/example.sh && .venv/bin/python scripts/readme_figure.py
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from softras.fileio import atomic_write

ROOT = Path(__file__).resolve().parents[1]
TILE = 160


def main() -> None:
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    rows = []
    for image in examples:
        preview = Image.open(ROOT / "out" / f"{image.stem}_preview.png").convert("RGB")
        source = Image.new("RGBA", (TILE, TILE), (255, 255, 255, 255))
        source.alpha_composite(Image.open(image).convert("RGBA").resize((TILE, TILE), Image.Resampling.LANCZOS))
        row = Image.new("RGB", (TILE + 8 + preview.width, TILE), (255, 255, 255))
        row.paste(source.convert("RGB"), (0, 0))
        row.paste(preview, (TILE + 8, 0))
        rows.append(row)
    figure = Image.new("RGB", (rows[0].width, len(rows) * (TILE + 8) - 8), (255, 255, 255))
    for k, row in enumerate(rows):
        figure.paste(row, (0, k * (TILE + 8)))
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG", optimize=True)
    (ROOT / "docs").mkdir(exist_ok=True)
    print(atomic_write(ROOT / "docs" / "results.png", lambda fh: fh.write(buffer.getvalue())))


if __name__ == "__main__":
    main()
