"""Render the bundled example images in examples/ from validation models of the shared training data.

    .venv/bin/python scripts/make_examples.py --data ../shared/data/shapes_train.npz

The models are Pix3D validation-split models (CC BY 4.0, Sun et al., CVPR 2018), never seen in training. The sofa
is composited on white and saved as JPEG, to exercise the plain-background intake.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from softras.data import Shapes
from softras.fileio import atomic_write
from softras_blender.render import render_views

EXAMPLES = [  # (model id, file name, elevation, azimuth, on white)
    ("IKEA_STEFAN", "chair.png", 25.0, 35.0, False),
    ("IKEA_KARLSTAD_2", "sofa.jpg", 20.0, 320.0, True),
    ("IKEA_BJORKUDDEN_1", "table.png", 30.0, 60.0, False),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/shapes_train.npz")
    ap.add_argument("--out", default="examples")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    shapes = Shapes.load(args.data)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    for model_id, name, elevation, azimuth, on_white in EXAMPLES:
        i = int(np.flatnonzero(shapes.model_id == model_id)[0])
        mesh, colors = shapes.mesh(i)
        rgba = render_views(mesh.vertices.numpy(), mesh.faces.numpy(), (colors.numpy() * 255).astype(np.uint8),
                            [elevation], [azimuth], size=args.size, samples=64)[0]
        image = Image.fromarray(rgba, "RGBA")
        buffer = io.BytesIO()
        if on_white:
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            Image.alpha_composite(white, image).convert("RGB").save(buffer, format="JPEG", quality=92)
        else:
            image.save(buffer, format="PNG", optimize=True)
        print(atomic_write(out / name, lambda fh: fh.write(buffer.getvalue())))


if __name__ == "__main__":
    main()
