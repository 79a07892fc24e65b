"""The add-on keeps the foreground Reconstruct used as a Blender image beside the reference, and uses it once the
artist has painted over it (through the headless bpy module, with a tiny random generator)."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from softras.intake import IntakeSettings, prepare_array
from softras.reconstruct import Reconstructor
from softras_blender import scene as scene_io
from test_blender_addon import addon, make_image, snapshot, tiny_weights  # noqa: F401 (fixtures)


def white_photo(h: int = 40, w: int = 48) -> np.ndarray:
    """A red disc on an opaque white backdrop (no transparency): (H, W, 4) in [0, 1]."""
    yy, xx = np.mgrid[:h, :w]
    rgba = np.ones((h, w, 4), np.float32)
    rgba[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) * 0.3) ** 2, :3] = (0.9, 0.2, 0.1)
    return rgba


def stored_mask(image) -> np.ndarray:
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(image.size[1], image.size[0], 4)[::-1, :, 0] > 0.5  # row 0 on top


def vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_reconstruct_stores_its_foreground_and_uses_it_once_painted(addon, tiny_weights, monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(tmp_path / "absent.pt"))  # the border estimate, whatever ships
    sc = addon
    sc.softras.texture = False
    photo = white_photo()
    reference = make_image("cup.png", photo)
    sc.softras.image = reference
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    foreground = bpy.data.images[reference[scene_io.FOREGROUND_PROPERTY]]
    assert foreground.name == "cup foreground" and tuple(foreground.size) == (48, 40) and foreground.packed_file
    disc = photo[..., 1] < 0.5
    assert (stored_mask(foreground) == disc).mean() > 0.97
    assert "foreground estimated from the border in 'cup foreground'" in sc.softras.status

    assert bpy.ops.softras.reconstruct() == {"FINISHED"}  # not painted: the intake finds the foreground again
    assert np.array_equal(vertices(bpy.data.objects["cup.001"]), vertices(bpy.data.objects["cup"]))
    assert "estimated from the border" in sc.softras.status

    painted = stored_mask(foreground).copy()
    painted[:, 24:] = False  # the artist paints the right half of the disc out
    grey = np.repeat(painted[::-1, :, None].astype(np.float32), 4, axis=2)
    grey[..., 3] = 1.0
    foreground.pixels.foreach_set(grey.ravel())
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    assert "foreground as painted in 'cup foreground'" in sc.softras.status
    assert np.array_equal(stored_mask(foreground), painted)  # kept as painted, stamped again
    model = Reconstructor(tiny_weights)
    expected, _ = model.predict(prepare_array(np.rint(photo * 255).astype(np.uint8), painted, IntakeSettings(size=32)).rgba[None])
    np.testing.assert_allclose(vertices(bpy.data.objects["cup.002"]), expected[0].numpy()[:, [0, 2, 1]] * [1, -1, 1], atol=1e-6)
    assert not np.allclose(vertices(bpy.data.objects["cup.002"]), vertices(bpy.data.objects["cup"]))


def test_a_painted_foreground_of_another_size_is_refused_and_changes_nothing(addon, monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(tmp_path / "absent.pt"))
    addon.softras.texture = False
    reference = make_image("cup.png", white_photo())
    addon.softras.image = reference
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    foreground = bpy.data.images[reference[scene_io.FOREGROUND_PROPERTY]]
    foreground.scale(24, 20)  # resized (its pixels change too): counts as painted, at the wrong size
    before = snapshot()
    with pytest.raises(RuntimeError, match="paint it at the reference's size"):
        bpy.ops.softras.reconstruct()
    assert snapshot() == before


def test_pictures_with_alpha_store_their_alpha_as_the_foreground(addon):
    rgba = white_photo()
    rgba[..., 3] = rgba[..., 1] < 0.5  # the disc opaque, the rest transparent
    addon.softras.texture = False
    reference = make_image("disc.png", rgba)
    addon.softras.image = reference
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    assert np.array_equal(stored_mask(scene_io.foreground_image(reference)), rgba[..., 3] > 0.5)
    assert addon.softras.status == "Added 'disc' (42 vertices)"  # (a picture's own alpha needs no word)
