"""softras.intake: any picture -> centred square straight-sRGB RGBA generator input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from softras.intake import IntakeResult, IntakeSettings, _label, load_image, prepare_array

W, H = 320, 240
BIG = 12.5  # 4000 x 3000


def scene(scale: float = 1.0, background: tuple[int, ...] = (255, 255, 255, 255)) -> Image.Image:
    """A red disc and a blue square; foreground bounding box (50, 60, 251, 161) at scale 1."""
    image = Image.new("RGBA", (round(W * scale), round(H * scale)), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse([v * scale for v in (50, 60, 150, 160)], fill=(255, 0, 0, 255))
    draw.rectangle([v * scale for v in (180, 90, 250, 160)], fill=(0, 0, 255, 255))
    return image


def _palette_transparent(path: Path) -> None:
    p = scene().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    white = next(i for i, c in enumerate(np.asarray(p.getpalette()).reshape(-1, 3)) if tuple(c) == (255, 255, 255))
    p.save(path, transparency=white)


def _exif_rotated(path: Path, orientation: int) -> None:
    turn = Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270  # undone by the tag
    stored = scene().convert("RGB").transpose(turn)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)


WRITERS = {
    "rgba.png": lambda p: scene(background=(0, 0, 0, 0)).save(p),
    "rgb.png": lambda p: scene().convert("RGB").save(p),
    "q95.jpg": lambda p: scene().convert("RGB").save(p, quality=95),
    "lossy.webp": lambda p: scene().convert("RGB").save(p, quality=90),
    "rgba.webp": lambda p: scene(background=(0, 0, 0, 0)).save(p, lossless=True),
    "grey16.tif": lambda p: Image.fromarray(np.asarray(scene().convert("L"), dtype=np.uint16) * 257).save(p),
    "rgb.bmp": lambda p: scene().convert("RGB").save(p),
    "palette.png": lambda p: scene().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p),
    "palette_alpha.png": _palette_transparent,
    "grey.png": lambda p: scene().convert("L").save(p),
    "la.png": lambda p: scene(background=(0, 0, 0, 0)).convert("LA").save(p),
    "cmyk.jpg": lambda p: scene().convert("RGB").convert("CMYK").save(p, quality=95),
    "cmyk.tif": lambda p: scene().convert("RGB").convert("CMYK").save(p),
    "exif6.jpg": lambda p: _exif_rotated(p, 6),
    "exif8.jpg": lambda p: _exif_rotated(p, 8),
}
ALPHA = {"rgba.png", "rgba.webp", "palette_alpha.png", "la.png"}
GREY = {"grey16.tif", "grey.png", "la.png"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("intake")
    paths = {name: root / name for name in WRITERS}
    for name, write in WRITERS.items():
        write(paths[name])
    return paths


@pytest.fixture(scope="module")
def reference(files: dict[str, Path]) -> IntakeResult:
    return load_image(files["rgba.png"])


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def centre(box: tuple[int, int, int, int]) -> np.ndarray:
    return np.array([box[0] + box[2], box[1] + box[3]]) / 2


def mean_colour(result: IntakeResult) -> np.ndarray:
    a = result.rgba[3]
    return (result.rgba[:3] * a).sum((1, 2)).numpy() / float(a.sum())


def grey(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def test_reference_layout(reference: IntakeResult) -> None:
    s = IntakeSettings()
    assert reference.rgba.shape == (4, 64, 64) and reference.rgba.dtype == torch.float32
    assert reference.foreground_source == "alpha" and reference.original_size == (W, H)
    assert torch.equal(reference.mask, reference.rgba[3])
    assert float(reference.rgba.min()) >= 0 and float(reference.rgba.max()) <= 1
    assert torch.all(reference.rgba[:3][:, reference.mask == 0] == 0)
    side = 201 / s.fill  # bounding box (50, 60, 251, 161)
    left, top, right, bottom = reference.crop_box
    assert right - left == bottom - top == pytest.approx(side, abs=1)
    assert centre(reference.crop_box) == pytest.approx([150.5, 110.5 - s.offset[1] * side], abs=1)
    ys, xs = np.nonzero(reference.mask.numpy() > 0.5)
    assert xs.max() + 1 - xs.min() == pytest.approx(s.fill * 64, abs=1.5)
    centre_xy = [(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2]
    assert centre_xy == pytest.approx([32 + 64 * s.offset[0], 32 + 64 * s.offset[1]], abs=1)


def test_no_fringes(reference: IntakeResult, files: dict[str, Path]) -> None:
    """Resampling is premultiplied: semi-transparent edge pixels keep the object's colour."""
    for result in (reference, load_image(files["rgb.png"])):
        edge = (result.mask > 0.05) & (result.mask < 0.95)
        assert edge.sum() > 20
        rgb = result.rgba[:3][:, edge]
        assert float(rgb.max(0).values.min()) > 0.85  # neither dark ...
        assert float(rgb.min(0).values.max()) < 0.15  # ... nor washed towards white


@pytest.mark.parametrize("name", [n for n in WRITERS if n != "rgba.png"])
def test_variants_agree(name: str, files: dict[str, Path], reference: IntakeResult) -> None:
    result = load_image(files[name])
    assert result.foreground_source == ("alpha" if name in ALPHA else "border")
    assert result.original_size == (W, H)
    assert iou(result.mask, reference.mask) >= 0.9
    assert centre(result.crop_box) == pytest.approx(centre(reference.crop_box), abs=2)
    side = result.crop_box[2] - result.crop_box[0]
    assert side == pytest.approx(reference.crop_box[2] - reference.crop_box[0], abs=3)
    colour, expected = mean_colour(result), mean_colour(reference)
    if name in GREY:
        assert colour == pytest.approx([grey(expected)] * 3, abs=0.05)
    else:
        assert colour == pytest.approx(expected, abs=0.06)


def test_mask_file(files: dict[str, Path], reference: IntakeResult, tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    Image.fromarray((np.asarray(scene().convert("L")) < 250).astype(np.uint8) * 255).save(mask)
    result = load_image(files["q95.jpg"], mask)
    assert result.foreground_source == "mask"
    assert iou(result.mask, reference.mask) >= 0.95
    assert result.crop_box == pytest.approx(reference.crop_box, abs=1)


def test_in_memory(reference: IntakeResult) -> None:
    rgba = np.asarray(scene(background=(0, 0, 0, 0)))
    for result in (prepare_array(rgba), prepare_array(rgba / 255.0)):
        assert result.crop_box == reference.crop_box
        assert torch.allclose(result.rgba, reference.rgba, atol=1e-6)
    rgb = np.asarray(scene().convert("RGB"), dtype=np.float32) / 255
    result = prepare_array(rgb, mask=rgba[..., 3] > 0)
    assert result.foreground_source == "mask" and iou(result.mask, reference.mask) >= 0.95


def test_large_jpeg(tmp_path: Path, files: dict[str, Path]) -> None:
    """4000 x 3000 JPEGs (decoded reduced, then again at full size when the object is small) match the small one."""
    small = load_image(files["rgb.png"])  # the same picture at 320 x 240
    path = tmp_path / "big.jpg"
    scene(BIG).convert("RGB").save(path, quality=90)
    big = load_image(path)
    assert big.original_size == (4000, 3000) and big.foreground_source == "border"
    assert np.array(big.crop_box) / BIG == pytest.approx(np.array(small.crop_box), abs=2)
    assert iou(big.mask, small.mask) >= 0.9
    assert float((big.rgba - small.rgba).abs().mean()) < 0.03
    canvas = Image.new("RGB", (4000, 3000), "white")
    canvas.paste(scene().convert("RGB"), (1000, 800))
    canvas.save(path, quality=95)
    inset, small = load_image(path), load_image(files["q95.jpg"])  # same JPEG artefacts
    assert np.array(inset.crop_box) - [1000, 800, 1000, 800] == pytest.approx(np.array(small.crop_box), abs=2)
    assert iou(inset.mask, small.mask) >= 0.9
    assert float((inset.rgba - small.rgba).abs().mean()) < 0.03


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_file_errors(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="empty file"):
        load_image(write_bytes(tmp_path, "empty.png", b""))
    with pytest.raises(ValueError, match="cannot read image .*text.png"):
        load_image(write_bytes(tmp_path, "text.png", b"not an image\n" * 10))
    data = files["q95.jpg"].read_bytes()
    with pytest.raises(ValueError, match="cannot read image .*cut.jpg"):
        load_image(write_bytes(tmp_path, "cut.jpg", data[: len(data) // 2]))


def test_unusable_images(tmp_path: Path, files: dict[str, Path]) -> None:
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(ValueError, match="too small"):
        load_image(tiny)
    with pytest.raises(ValueError, match="too small"):
        prepare_array(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="no foreground found in .*: the image looks uniform"):
        prepare_array(np.full((30, 40, 3), 250, np.uint8))
    with pytest.raises(ValueError, match="no foreground found in .*: the alpha channel is fully transparent"):
        prepare_array(np.zeros((30, 40, 4), np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="plain background.*give a mask or an image with transparency"):
        prepare_array(noise)


def test_mask_errors(tmp_path: Path, files: dict[str, Path]) -> None:
    def mask(name: str, size: tuple[int, int], value: int) -> Path:
        Image.new("L", size, value).save(tmp_path / name)
        return tmp_path / name

    with pytest.raises(ValueError, match="no foreground found in .*: the mask is empty"):
        load_image(files["rgb.png"], mask("empty.png", (W, H), 0))
    with pytest.raises(ValueError, match="mask covers the whole image"):
        load_image(files["rgb.png"], mask("full.png", (W, H), 255))
    with pytest.raises(ValueError, match=f"mask size 10x10 differs from image size {W}x{H}"):
        load_image(files["rgb.png"], mask("small.png", (10, 10), 255))
    with pytest.raises(ValueError, match=f"mask size {H}x{W} differs from image size {W}x{H}"):
        load_image(files["exif6.jpg"], mask("stored_orientation.png", (H, W), 255))  # image is 240x320 as stored


def white_table(rng: np.random.Generator | None = None) -> np.ndarray:
    """A white table top (4% darker than the white backdrop, faint) on two grey legs (clearly different), 160 x 120,
    as uint8 RGB: the top's box is (30, 30)-(130, 50), the legs run down to y = 100. ``rng`` adds sensor noise and
    JPEG."""
    x = np.ones((120, 160, 3), np.float32)
    x[30:50, 30:130] = 0.96
    x[50:100, 34:44] = x[50:100, 116:126] = 0.5
    if rng is not None:
        x += rng.normal(0, 0.01, x.shape)
    picture = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng is not None:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=60)
        picture = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return picture


def test_faint_parts_of_a_light_object_join_it() -> None:
    """A white table top on a white backdrop belongs to the object through its grey legs (hysteresis), also under
    noise and JPEG: the crop box spans the top's width (100 px, where the legs alone span 92)."""
    side = 100 / IntakeSettings.fill
    for picture in (white_table(), white_table(np.random.default_rng(0))):
        result = prepare_array(picture)
        assert result.foreground_source == "border"
        assert result.crop_box[2] - result.crop_box[0] == pytest.approx(side, abs=3)
        rows = (result.mask > 0.5).float().mean(1)
        assert float(rows.max()) > 0.7  # a row across the whole table top


def test_uneven_lighting_is_not_foreground() -> None:
    """A grey post under a broad patch of light on a white backdrop (4% brighter than the rest, far larger than
    the post): the patch is not grown into the object."""
    x = np.full((120, 160, 3), 0.96, np.float32)
    yy, xx = np.mgrid[:120, :160]
    x[np.hypot(xx - 80, yy - 60) < 55] = 1.0
    x[40:90, 75:85] = 0.5
    result = prepare_array(np.rint(x * 255).astype(np.uint8))
    side = 50 / IntakeSettings.fill
    assert result.crop_box[3] - result.crop_box[1] == pytest.approx(side, abs=2)


def _flood_fill_labels(m: np.ndarray) -> np.ndarray:
    """Reference for ``softras.intake._label``: breadth-first flood fill from each unlabelled pixel in raster order."""
    h, w = m.shape
    labels = np.full((h, w), m.size, dtype=np.int64)
    for seed in np.flatnonzero(m):
        r, c = divmod(int(seed), w)
        if labels[r, c] != m.size:
            continue
        labels[r, c], stack = seed, [(r, c)]
        while stack:
            r, c = stack.pop()
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < h and 0 <= cc < w and m[rr, cc] and labels[rr, cc] == m.size:
                    labels[rr, cc] = seed
                    stack.append((rr, cc))
    return labels


def _snake(n: int) -> np.ndarray:
    """Full even rows joined at alternating ends: one component whose runs connect only through a long chain."""
    m = np.zeros((n, n), dtype=bool)
    m[::2] = True
    m[1::4, -1] = True
    m[3::4, 0] = True
    return m


@pytest.mark.parametrize("case", ["random", "sparse", "snake", "empty", "full"])
def test_connected_components_match_a_flood_fill(case):
    rng = np.random.default_rng(0)
    m = {"random": rng.random((37, 53)) < 0.55, "sparse": rng.random((40, 31)) < 0.3, "snake": _snake(41),
         "empty": np.zeros((9, 12), dtype=bool), "full": np.ones((9, 12), dtype=bool)}[case]
    expected = _flood_fill_labels(m)
    assert np.array_equal(_label(m), expected)
    components = len(np.unique(expected[m]))
    if case in ("random", "sparse"):
        assert components >= 20
    else:
        assert components == {"snake": 1, "empty": 0, "full": 1}[case]
