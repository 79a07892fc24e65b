"""`softras reconstruct` and `softras refine`: outputs, JSON-lines summary, and every bad input."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from softras import Camera
from softras.cli import main
from softras.meshio import read_mesh, write_mesh
from softras.mesh import icosphere
from softras.raster import RasterSettings, render_silhouette


def blob_png(path, size=(120, 90), color=(200, 40, 40)):
    """A coloured ellipse on a transparent background."""
    yy, xx = np.mgrid[: size[1], : size[0]]
    inside = ((xx - size[0] / 2) / (size[0] / 3)) ** 2 + ((yy - size[1] / 2) / (size[1] / 3)) ** 2 <= 1
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[inside] = (*color, 255)
    Image.fromarray(rgba).save(path)
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb"])
def test_reconstruct_writes_one_coloured_mesh_per_image(fmt, tmp_path, tiny_weights, capsys):
    a, b = blob_png(tmp_path / "a.png"), blob_png(tmp_path / "b.png", color=(20, 200, 30))
    code, records, _ = run(capsys, "reconstruct", a, b, "-o", tmp_path / "out", "--format", fmt, "--weights", tiny_weights)
    assert code == 0
    assert [r["status"] for r in records] == ["ok", "ok"] and all(r["seconds"] >= 0 for r in records)
    mesh = read_mesh(tmp_path / "out" / f"a.{fmt}")
    assert mesh.num_vertices == 42 and mesh.num_faces == 80
    assert mesh.vertices.abs().max() <= 0.5 + 1e-6
    # colours come from the image: the red blob gives reddish vertices
    assert mesh.vertex_colors is not None and mesh.vertex_colors[:, 0].mean() > mesh.vertex_colors[:, 1].mean() + 0.3


def test_reconstruct_with_refinement_reports_iou(tmp_path, tiny_weights, capsys):
    a = blob_png(tmp_path / "a.png")
    code, records, _ = run(capsys, "reconstruct", a, "-o", tmp_path, "--refine", "5", "--weights", tiny_weights)
    assert code == 0 and records[0]["iou_after"] >= records[0]["iou_before"]


def test_reconstruct_refines_with_the_prediction_step(tmp_path, tiny_weights):
    from softras.intake import IntakeSettings, load_image
    from softras.reconstruct import PREDICTION_REFINE_LR, Reconstructor
    from softras.refine import RefineSettings, refine_to_image

    reconstructor = Reconstructor(tiny_weights)
    intake = load_image(blob_png(tmp_path / "a.png"), settings=IntakeSettings(size=reconstructor.image_size))
    refined = reconstructor.reconstruct_intake(intake, refine_steps=5)
    plain = reconstructor.reconstruct_intake(intake).mesh
    expected = refine_to_image(plain.vertices, plain.faces, intake.mask, settings=RefineSettings(steps=5, lr=PREDICTION_REFINE_LR))
    assert PREDICTION_REFINE_LR < RefineSettings().lr and refined.iou_after > refined.iou_before
    assert torch.equal(refined.mesh.vertices, expected.vertices) and refined.iou_after == expected.iou_after
    assert torch.equal(refined.mesh.vertex_colors, plain.vertex_colors)


def test_refine_steps_must_not_be_negative(tmp_path, tiny_weights):
    for command in (["reconstruct", "a.png", "-o", str(tmp_path)], ["eval", "--weights", "w.pt", "--data", "d.npz"]):
        with pytest.raises(SystemExit):
            main(command + ["--refine", "-1"])


def test_reconstruct_goes_on_past_bad_files(tmp_path, tiny_weights, capsys):
    good = blob_png(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    Image.new("RGBA", (1, 1), (255, 0, 0, 255)).save(tmp_path / "pixel.png")
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(tmp_path / "transparent.png")
    inputs = [good, tmp_path / "missing.png", tmp_path / "empty.png", tmp_path / "text.png", truncated,
              tmp_path / "pixel.png", tmp_path / "transparent.png"]
    out = tmp_path / "out"
    code, records, _ = run(capsys, "reconstruct", *inputs, "-o", out, "--no-texture", "--weights", tiny_weights)
    assert code == 1
    assert [r["status"] for r in records] == ["ok"] + ["error"] * 6
    errors = [r["error"] for r in records[1:]]
    for error, needle in zip(errors, ["no such image", "empty file", "cannot read image", "cannot read image", "too small", "no foreground"]):
        assert needle in error and "\n" not in error
    assert sorted(p.name for p in out.iterdir()) == ["good.obj"]


def test_reconstruct_mask_errors(tmp_path, tiny_weights, capsys):
    image = blob_png(tmp_path / "a.png", size=(60, 40))
    Image.new("L", (60, 40), 0).save(tmp_path / "empty_mask.png")
    Image.new("L", (60, 40), 255).save(tmp_path / "full_mask.png")
    Image.new("L", (30, 20), 255).save(tmp_path / "small_mask.png")
    for mask, needle in [("empty_mask.png", "mask is empty"), ("full_mask.png", "covers the whole image"),
                         ("small_mask.png", "differs from image size")]:
        code, records, _ = run(capsys, "reconstruct", image, "--mask", tmp_path / mask, "-o", tmp_path / "out", "--weights", tiny_weights)
        assert code == 1 and needle in records[0]["error"]
    assert not any((tmp_path / "out").iterdir())


def test_reconstruct_setup_errors(tmp_path, tiny_weights, capsys):
    image = blob_png(tmp_path / "a.png")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [(["--weights", tmp_path / "none.pt"], "weights file not found"),
             (["--weights", corrupt], "not a readable weights file"),
             (["--weights", tiny_weights, "-o", blocker / "sub"], "cannot create output directory")]
    for extra, needle in cases:
        args = ["reconstruct", image, "-o", tmp_path / "out2", *extra]
        code, records, err = run(capsys, *args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and records == []
    with pytest.raises(SystemExit):
        main(["reconstruct", str(image), "-o", str(tmp_path), "--format", "stl"])


def test_refine_cli_raises_iou(tmp_path, capsys):
    box = icosphere(2, 0.3)
    box.vertices = box.vertices * torch.tensor([1.3, 0.6, 0.9])
    cams = Camera.from_angles(elevation=30.0, azimuth=torch.tensor([0.0, 90.0]))
    sil = render_silhouette(box.vertices, box.faces, cams, RasterSettings(48, sigma=1e-4))
    masks = []
    for k in range(2):
        masks.append(tmp_path / f"m{k}.png")
        Image.fromarray(((sil[k] > 0.5).numpy() * 255).astype(np.uint8)).save(masks[-1])
    sphere = write_mesh(icosphere(2, 0.35), tmp_path / "sphere.obj")
    out = tmp_path / "fitted.ply"
    code = main(["refine", str(sphere), *map(str, masks), "-o", str(out), "--azimuth", "0", "90", "--steps", "60"])
    text = capsys.readouterr().out
    assert code == 0 and out.exists()
    before, after = map(float, re.search(r"IoU before ([0-9.]+)  after ([0-9.]+)", text).groups())
    assert after > before + 0.05


# ---------------------------------------------------------------------------------------------- textures
def test_reconstruct_bakes_a_texture_beside_an_obj_by_default(tmp_path, tiny_weights, capsys, monkeypatch):
    import softras.texture

    monkeypatch.setattr(softras.texture, "MIN_VIEWPOINT_IOU", 0.0)  # the tiny random generator's shapes fit badly
    a = blob_png(tmp_path / "a.png")
    code, records, _ = run(capsys, "reconstruct", a, "-o", tmp_path / "out", "--texture-size", "64", "--weights", tiny_weights)
    assert code == 0 and records[0]["texture"] is True and "warning" not in records[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mtl", "a.obj", "a.png"]
    mesh = read_mesh(tmp_path / "out" / "a.obj")
    assert mesh.texture is not None and tuple(mesh.texture.image.shape) == (64, 64, 3)
    assert mesh.vertex_colors is not None  # the vertex colours stay beside the texture
    # the picture is red: the texels that saw it are red
    image = mesh.texture.image.float()
    assert float(((image[..., 0] > 150) & (image[..., 1] < 80)).float().mean()) > 0.2


def test_reconstruct_no_texture_writes_the_mesh_alone(tmp_path, tiny_weights, capsys):
    a = blob_png(tmp_path / "a.png")
    code, records, _ = run(capsys, "reconstruct", a, "-o", tmp_path / "out", "--no-texture", "--format", "glb",
                           "--weights", tiny_weights)
    assert code == 0 and "texture" not in records[0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.glb"] and read_mesh(tmp_path / "out" / "a.glb").texture is None


def test_reconstruct_of_a_tiny_picture_falls_back_to_vertex_colours_with_a_warning(tmp_path, tiny_weights, capsys):
    a = blob_png(tmp_path / "a.png", size=(40, 30))
    code, records, err = run(capsys, "reconstruct", a, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 0 and records[0]["status"] == "ok" and records[0]["texture"] is False
    assert records[0]["warning"].startswith("picture too small") and "picture too small" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.obj"]


def test_reconstruct_refuses_a_bad_texture_size(tmp_path, tiny_weights, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", str(blob_png(tmp_path / "a.png")), "-o", str(tmp_path), "--texture-size", "4"])
    assert exit_info.value.code == 2 and "--texture-size" in capsys.readouterr().err


def test_reconstruct_file_is_the_intake_the_generator_and_the_bake(tmp_path, tiny_weights):
    from softras.intake import IntakeSettings, load_image
    from softras.reconstruct import Reconstructor
    from softras.texture import BakeSettings

    picture = blob_png(tmp_path / "a.png", size=(240, 180))
    reconstructor = Reconstructor(tiny_weights)
    plain = reconstructor.reconstruct_file(picture)
    expected = reconstructor.reconstruct_intake(load_image(picture, settings=IntakeSettings(size=reconstructor.image_size)))
    assert plain.texture_message is None and plain.reconstruction.mesh.texture is None
    assert torch.equal(plain.reconstruction.mesh.vertices, expected.mesh.vertices)
    textured = reconstructor.reconstruct_file(picture, bake=BakeSettings(size=64))
    mesh = textured.reconstruction.mesh
    assert torch.equal(mesh.vertices, expected.mesh.vertices)
    assert (mesh.texture is not None) == (textured.texture_message is None)
    with pytest.raises(FileNotFoundError):
        reconstructor.reconstruct_file(tmp_path / "missing.png")
