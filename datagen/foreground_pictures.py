"""Training pictures for the foreground network: product photos of training-split models with their true alpha.

Each picture is one engine render (:func:`softras.data.render_views`) of a training-split model, from a random camera
(as :mod:`datagen.varied_views`) under a random key light and ambient share, with its colours as stored, made light
(white to light grey, slightly tinted: the white-on-white case), or a random colour; a third of them high-key (strong
ambient, exposure pushed until light surfaces clip). The render is placed at a random size and position on a
``--size`` square canvas over a synthetic studio backdrop:

- colour: pure white, light grey, a light tint, or (rarely) any colour;
- a vertical gradient (a sweep lit from above or below) and vignetting (darker corners);
- shadows on the backdrop, which stay background: a soft contact shadow (a blurred ellipse under the object's
  lowest part) and/or a cast shadow (the silhouette squashed, sheared and offset from the object's base, blurred);
- sensor noise, sometimes blur, and JPEG at a random quality.

The label is the render's alpha (the shadow is not part of it). Every picture draws from its own generator seeded
with ``(--seed, picture index)``: the same seed writes the same file. Output (atomic): ``pictures`` uint8 (N, S, S,
3), ``alpha`` uint8 (N, S, S), ``model_index`` int64 (N,), ``kind`` str (N,) (backdrop and lighting of each).
Optionally (``--views``) a share of the renders comes from a views file's training split (e.g. the Cycles views),
resized to the render size, instead of the engine's renderer.

    python -m datagen.foreground_pictures --data ../shared/data/shapes_train.npz --out cache/foreground_pictures.npz
"""

from __future__ import annotations

import argparse
import colorsys
import io
import sys
from dataclasses import replace

import numpy as np
from PIL import Image, ImageFilter

from datagen.varied_views import varied_cameras
from softras.data import Shapes, ViewSet, render_views, save_views, split_by_model

__all__ = ["light_colors", "backdrop", "contact_shadow", "cast_shadow", "compose", "make_picture", "main"]


def light_colors(colors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Face colours (F, 3) uint8 made light: one near-white or light-grey base (0.78-1.0), a slight tint, and
    the stored colours' variation kept faintly (a white product with light-grey parts)."""
    base = rng.uniform(0.78, 1.0) * (1 + rng.uniform(-0.04, 0.04, 3))
    shade = colors.astype(np.float32).mean(1, keepdims=True) / 255
    c = base * (1 - rng.uniform(0.0, 0.25) * (1 - shade))
    return np.clip(np.rint(c * 255), 0, 255).astype(np.uint8)


def random_color(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) uint8: one random hue, saturation and value for all faces."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.9), rng.uniform(0.25, 1.0))
    return np.tile(np.rint(np.array([r, g, b]) * 255).astype(np.uint8), (count, 1))


def backdrop(size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A studio backdrop (size, size, 3) float32 sRGB and its kind: base colour, vertical gradient, vignetting."""
    u = rng.random()
    if u < 0.45:
        kind, base = "white", np.full(3, rng.uniform(0.96, 1.0))
    elif u < 0.75:
        kind, base = "grey", np.full(3, rng.uniform(0.72, 0.96))
    elif u < 0.9:
        kind, base = "tint", rng.uniform(0.8, 1.0) * (1 + rng.uniform(-0.06, 0.06, 3))
    else:
        kind, base = "colour", rng.uniform(0.05, 1.0, 3)
    y = np.linspace(-0.5, 0.5, size, dtype=np.float32)[:, None, None]
    x = np.linspace(-0.5, 0.5, size, dtype=np.float32)[None, :, None]
    image = base * (1 + rng.uniform(-0.14, 0.1) * y * (rng.random() < 0.6))
    if rng.random() < 0.5:  # vignetting: darker towards the corners
        cx, cy = rng.uniform(-0.15, 0.15, 2)
        image = image * (1 - rng.uniform(0.05, 0.3) * (((x - cx) ** 2 + (y - cy) ** 2) / 0.5) ** rng.uniform(1, 2))
    if rng.random() < 0.15:  # a sweep's soft horizon: a darker or lighter band
        row = rng.uniform(0.2, 0.8) - 0.5
        image = image * (1 + rng.uniform(-0.08, 0.05) * np.exp(-((y - row) / rng.uniform(0.03, 0.12)) ** 2))
    return np.clip(image, 0, 1).astype(np.float32), kind


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of an (S, S) array in [0, 1] (through 8 bits)."""
    image = Image.fromarray(np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(float(radius))), np.float32) / 255


def contact_shadow(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darkening (S, S) in [0, 1]: a soft ellipse under the lowest part of the object in ``alpha`` (S, S) [0, 1]."""
    rows, cols = np.nonzero(alpha > 0.5)
    s = alpha.shape[0]
    out = np.zeros_like(alpha, dtype=np.float32)
    if rows.size == 0:
        return out
    bottom = rows.max()
    low = cols[rows >= bottom - max(2, 0.15 * (bottom - rows.min()))]
    cx = 0.5 * (low.min() + low.max()) + rng.uniform(-0.05, 0.05) * s
    half = max(2.0, 0.5 * (low.max() - low.min()) * rng.uniform(0.8, 1.4) + rng.uniform(0, 0.05) * s)
    height = half * rng.uniform(0.08, 0.35)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    out = (((xx - cx) / half) ** 2 + ((yy - bottom - rng.uniform(-0.3, 0.6) * height) / height) ** 2 <= 1).astype(np.float32)
    return np.clip(_blur(out, rng.uniform(0.02, 0.25) * half + 1), 0, 1)


def cast_shadow(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darkening (S, S) in [0, 1]: the silhouette squashed towards its base, sheared sideways and blurred."""
    rows, _ = np.nonzero(alpha > 0.5)
    out = np.zeros_like(alpha, dtype=np.float32)
    if rows.size == 0:
        return out
    bottom = float(rows.max())
    squash, shear = rng.uniform(0.1, 0.6), rng.uniform(-1.5, 1.5)
    # output pixel (x, y) takes the silhouette at (x - shear * (bottom - y) ..., bottom - (bottom - y) / squash)
    image = Image.fromarray((alpha > 0.5).astype(np.uint8) * 255)
    coefficients = (1, shear / squash, -shear / squash * bottom + rng.uniform(-0.03, 0.03) * alpha.shape[1],
                    0, 1 / squash, bottom - bottom / squash)
    out = np.asarray(image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR), np.float32) / 255
    return np.clip(_blur(out, rng.uniform(1, 0.06 * alpha.shape[0] + 2)), 0, 1)


def compose(render: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """A product photo from an RGBA render (R, R, 4) uint8: (size, size, 3) uint8, its alpha (size, size) uint8
    (the object alone) and its kind (backdrop, shadow)."""
    side = int(round(size * rng.uniform(0.55, 1.15)))
    image = Image.fromarray(render).resize((side, side), Image.Resampling.BICUBIC)  # premultiplied RGBA
    canvas = Image.new("RGBA", (size, size))
    slack = size - side
    x0 = round(rng.uniform(min(0, slack), max(0, slack))) if slack else 0
    y0 = round(rng.uniform(min(0, slack), max(0, slack))) if slack else 0
    canvas.paste(image, (x0, y0))
    obj = np.asarray(canvas, np.float32) / 255
    alpha = obj[..., 3]
    background, kind = backdrop(size, rng)
    shadow = np.zeros_like(alpha)
    if rng.random() < 0.55:
        shadow = np.maximum(shadow, rng.uniform(0.15, 0.6) * contact_shadow(alpha, rng))
        kind += "+contact"
    if rng.random() < 0.35:
        shadow = np.maximum(shadow, rng.uniform(0.08, 0.4) * cast_shadow(alpha, rng))
        kind += "+cast"
    background = background * (1 - shadow[..., None])
    rgb = obj[..., :3] * alpha[..., None] + background * (1 - alpha[..., None])
    if rng.random() < 0.2:
        rgb = np.asarray(Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0)))), np.float32) / 255
    if rng.random() < 0.6:
        rgb = rgb + rng.normal(0, rng.uniform(0.002, 0.02), rgb.shape).astype(np.float32)
    picture = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=int(rng.integers(40, 96)))
        picture = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()
    return picture, np.rint(alpha * 255).astype(np.uint8), kind


def make_picture(shapes: Shapes, model: int, render_size: int, size: int, rng: np.random.Generator,
                 views: ViewSet | None = None, view_model: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One training picture of ``shapes`` model ``model`` (or, with ``views``, of that file's ``view_model``):
    (size, size, 3) uint8 photo, (size, size) uint8 alpha, kind."""
    high_key = rng.random() < 0.33
    if views is not None:
        view = int(rng.integers(views.num_views))
        render = views.pictures(np.array([view_model]), np.array([view]))[0]
        render = np.asarray(Image.fromarray(render).resize((render_size, render_size), Image.Resampling.BICUBIC))
        source = "views"
    else:
        camera = varied_cameras(1, (0.0, 50.0), (2.2, 6.0), (0.6, 0.95), rng)
        up, around = np.radians(rng.uniform(10.0, 85.0)), rng.uniform(0.0, 2 * np.pi)
        ambient = rng.uniform(0.8, 1.0) if high_key else rng.uniform(0.4, 0.85)
        light = np.array([[[np.cos(up) * np.sin(around), np.sin(up), -np.cos(up) * np.cos(around), ambient]]], np.float32)
        lo, hi = shapes.face_offsets[model], shapes.face_offsets[model + 1]
        u = rng.random()
        colors = shapes.face_colors.copy()
        if u < 0.4:
            colors[lo:hi] = light_colors(colors[lo:hi], rng)
            source = "light"
        elif u < 0.7:
            colors[lo:hi] = random_color(hi - lo, rng)
            source = "colour"
        else:
            source = "stored"
        recoloured = replace(shapes, face_colors=colors)
        render = render_views(recoloured, [model], camera["elevations"], camera["azimuths"], size=render_size,
                              distance=camera["distance"], fov=camera["fov"], lights=light)[0, 0]
    if high_key:  # exposure pushed: light surfaces clip to white
        render = render.copy()
        render[..., :3] = np.clip(render[..., :3].astype(np.float32) * rng.uniform(1.1, 1.5), 0, 255).astype(np.uint8)
    picture, alpha, kind = compose(render, size, rng)
    return picture, alpha, f"{kind}+{source}" + ("+highkey" if high_key else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="shapes file (shared/data/shapes_train.npz)")
    parser.add_argument("--out", required=True, help="pictures file to write (.npz), e.g. cache/foreground_pictures.npz")
    parser.add_argument("--count", type=int, default=2000, help="number of pictures")
    parser.add_argument("--size", type=int, default=256, help="picture side in pixels")
    parser.add_argument("--render-size", type=int, default=192, help="render side in pixels before placement")
    parser.add_argument("--views", help="also take renders from this views file's training split (e.g. Cycles views)")
    parser.add_argument("--views-share", type=float, default=0.3, help="share of the pictures from --views")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 32 or args.render_size < 16:
        parser.error("--count must be >= 1, --size >= 32 and --render-size >= 16")
    shapes = Shapes.load(args.data)
    train = np.flatnonzero(split_by_model(shapes.category, shapes.model_id) == "train")
    views = ViewSet(args.views, "train") if args.views else None
    pictures = np.empty((args.count, args.size, args.size, 3), np.uint8)
    alphas = np.empty((args.count, args.size, args.size), np.uint8)
    models, kinds = np.empty(args.count, np.int64), []
    for i in range(args.count):
        rng = np.random.default_rng([args.seed, i])
        if views is not None and rng.random() < args.views_share:
            k = int(rng.integers(views.num_models))
            models[i] = int(views.model_index[k])
            picture, alpha, kind = make_picture(shapes, models[i], args.render_size, args.size, rng, views, k)
        else:
            models[i] = int(rng.choice(train))
            picture, alpha, kind = make_picture(shapes, models[i], args.render_size, args.size, rng)
        pictures[i], alphas[i] = picture, alpha
        kinds.append(kind)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{args.count} pictures", file=sys.stderr, flush=True)
    if not np.isin(models, train).all():
        raise ValueError("a picture came from a model outside the training split")
    path = save_views(args.out, pictures=pictures, alpha=alphas, model_index=models, kind=np.array(kinds))
    print(f"{path}: {args.count} pictures at {args.size} px of {len(np.unique(models))} training-split models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
