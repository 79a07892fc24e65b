"""The Blender add-on (softras_blender) through the headless bpy module, with a tiny random generator.

Every test starts from an empty factory scene with the add-on registered, and unregisters it afterwards (the bpy
module hangs at interpreter exit while Python-defined operator classes are still registered).
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
import torch
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Vector

import softras_blender
from softras.colorspace import linear_to_srgb, srgb_to_linear
from softras.intake import IntakeSettings, prepare_array
from softras.model import Generator, GeneratorConfig, save_weights
from softras.raster import RasterSettings, render_silhouette
from softras.reconstruct import Reconstructor
from softras_blender import convert, deps, engine, operators, runner
from softras_blender import scene as scene_io

TINY = GeneratorConfig(image_size=32, template_level=1, conv_channels=(8, 16, 32), encoder_fc=(64, 64, 32),
                       decoder_fc=(64, 128), palette_size=4, color_hidden=16, color_sample_size=8, viewpoint_bins=8,
                       viewpoint_hidden=16)
BLOB_SRGB = (0.9, 0.2, 0.1)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(Generator(TINY), tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture
def addon(tiny_weights, monkeypatch):
    """Empty factory scene, the add-on registered, the tiny weights as the engine default ($SOFTRAS_WEIGHTS)."""
    monkeypatch.setenv("SOFTRAS_WEIGHTS", str(tiny_weights))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    softras_blender.register()
    try:
        yield bpy.context.scene
    finally:
        softras_blender.unregister()


def make_image(name: str, rgba: np.ndarray, float_buffer: bool = False) -> bpy.types.Image:
    """A bpy image holding ``rgba`` (H, W, 4) in [0, 1], row 0 at the top (flipped into Blender's order)."""
    h, w = rgba.shape[:2]
    image = bpy.data.images.new(name, w, h, alpha=True, float_buffer=float_buffer)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], np.float32).ravel())
    return image


def missing_file_image(folder) -> bpy.types.Image:
    """A bpy image that points at a file which does not exist in ``folder`` (so it has no pixels)."""
    image = bpy.data.images.new("ghost", 4, 4)
    image.source = "FILE"
    image.filepath = str(folder / "missing.png")
    return image


def blob_rgba(h: int = 40, w: int = 48, color=BLOB_SRGB) -> np.ndarray:
    """A coloured disc on a transparent background, straight sRGB."""
    yy, xx = np.mgrid[:h, :w]
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) * 0.3) ** 2] = (*color, 1.0)
    return rgba


def snapshot() -> dict:
    """What an operator could have changed: objects, mesh vertex data, materials."""
    meshes = {}
    for mesh in bpy.data.meshes:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        meshes[mesh.name] = co.tolist()
    return {"objects": sorted(o.name for o in bpy.data.objects), "meshes": meshes,
            "materials": sorted(m.name for m in bpy.data.materials),
            "images": {i.name: bytes(np.asarray(i.pixels[:], np.float32).tobytes()) for i in bpy.data.images}}


# ---------------------------------------------------------------------------------------------- registration
def test_register_unregister_twice_leaves_nothing_behind():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    path_before, handlers_before = list(sys.path), list(bpy.app.handlers.load_post)
    for _ in range(2):
        softras_blender.register()
        assert hasattr(bpy.types.Scene, "softras")
        assert bpy.ops.softras.reconstruct.get_rna_type().identifier == "SOFTRAS_OT_reconstruct"
        softras_blender.unregister()
    leftovers = [name for name in dir(bpy.types) if name.upper().startswith("SOFTRAS")]
    assert leftovers == []
    assert not hasattr(bpy.types.Scene, "softras")
    for op in ("reconstruct", "fit_silhouette", "cancel", "install_dependencies"):
        with pytest.raises(KeyError):
            getattr(bpy.ops.softras, op).get_rna_type()
    assert list(bpy.app.handlers.load_post) == handlers_before
    assert sys.path == path_before
    assert not runner.busy()


WITHOUT_TORCH = """
import sys
if sys.argv[1] == "hide":
    sys.modules["torch"] = sys.modules["PIL"] = None  # as in Blender's own Python: neither can be imported
import bpy, softras_blender
from softras_blender import deps
bpy.ops.wm.read_factory_settings(use_empty=True)
softras_blender.register()
print("torch imported:", sys.modules.get("torch") is not None, "engine imported:", "softras.reconstruct" in sys.modules)
print("missing:", deps.missing(), "can reconstruct:", bpy.ops.softras.reconstruct.poll())
from softras_blender import ui
deps.nvidia_driver()
print("device line:", ui.device_line(bpy.context), "torch imported:", sys.modules.get("torch") is not None)
softras_blender.unregister()
"""


@pytest.mark.parametrize("hide", [False, True])
def test_registers_without_torch(hide):
    """Importing and registering never imports torch or the engine, nor do the driver check and the panel's device
    line; without torch the operators are disabled and the dependencies reported missing (fresh interpreters)."""
    out = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "hide" if hide else "keep"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "torch imported: False engine imported: False" in lines
    assert "device line: None torch imported: False" in lines  # drawing the panel imports nothing
    if hide:
        assert "missing: ['PyTorch', 'Pillow'] can reconstruct: False" in lines
    else:
        assert "missing: [] can reconstruct: True" in lines


# ---------------------------------------------------------------------------------------------- reconstruct
def test_reconstruct_adds_coloured_mesh_at_cursor(addon, tiny_weights):
    sc = addon
    other = bpy.data.objects.new("Other", None)
    sc.collection.objects.link(other)
    other.select_set(True)
    sc.softras.image = make_image("blob.png", blob_rgba())
    sc.softras.smooth = True
    sc.cursor.location = (1.0, -2.0, 0.5)
    before = set(bpy.data.objects.keys())
    assert {"REGISTER", "UNDO"} <= operators.SOFTRAS_OT_reconstruct.bl_options

    assert bpy.ops.softras.reconstruct() == {"FINISHED"}

    new = set(bpy.data.objects.keys()) - before
    assert new == {"blob"}
    obj = bpy.data.objects["blob"]
    mesh = obj.data
    assert len(mesh.vertices) == 42 and len(mesh.polygons) == 80
    assert tuple(obj.location) == pytest.approx((1.0, -2.0, 0.5))
    assert bpy.context.view_layer.objects.active == obj and obj.select_get() and not other.select_get()
    assert all(p.use_smooth for p in mesh.polygons)
    co = np.empty(42 * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    assert np.abs(co).max() <= 0.5 + 1e-5  # the engine's unit box, about the object origin

    attribute = mesh.color_attributes[scene_io.COLOR_ATTRIBUTE]
    assert (attribute.data_type, attribute.domain) == ("FLOAT_COLOR", "POINT")
    assert mesh.color_attributes.active_color_name == scene_io.COLOR_ATTRIBUTE
    colors = np.empty(42 * 4, np.float32)
    attribute.data.foreach_get("color", colors)
    # the engine's own prediction on the same picture, Y-up -> Z-up and sRGB -> linear
    model = Reconstructor(tiny_weights)
    vertices, expected = model.predict(prepare_array(blob_rgba(), None, IntakeSettings(size=32)).rgba[None])
    np.testing.assert_allclose(colors.reshape(-1, 4), np.c_[srgb_to_linear(expected[0].numpy()), np.ones(42)], atol=1e-5)
    np.testing.assert_allclose(co.reshape(-1, 3), vertices[0].numpy()[:, [0, 2, 1]] * [1, -1, 1], atol=1e-6)

    tree = obj.active_material.node_tree
    node = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeVertexColor")
    assert node.layer_name == scene_io.COLOR_ATTRIBUTE
    link = next(l for l in tree.links if l.from_node == node)
    assert link.to_node.bl_idname == "ShaderNodeBsdfPrincipled" and link.to_socket.name == "Base Color"
    assert sc.softras.status.startswith("Added 'blob'") and not sc.softras.running


def test_reconstruct_is_one_undo_step(addon):
    addon.softras.image = make_image("blob.png", blob_rgba())
    bpy.ops.ed.undo_push(message="before")
    # bpy.ops calls from a script do not push undo steps themselves; push one as the UI does after an UNDO operator
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Reconstruct")
    assert "blob" in bpy.data.objects
    bpy.ops.ed.undo()
    assert "blob" not in bpy.data.objects and "blob" not in bpy.data.meshes


def test_reconstruct_with_refinement_reports_iou(addon):
    addon.softras.image = make_image("blob.png", blob_rgba())
    addon.softras.refine_steps = 2
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    assert "IoU" in addon.softras.status and len(bpy.data.objects["blob"].data.vertices) == 42


class ModalProbe(operators._JobOperator):
    """The operators' modal logic driven by hand: the bpy module has no event loop, and operator instances cannot
    be created from Python. ``_start`` is what ``invoke`` runs before ``modal_handler_add``."""

    bl_label = "Reconstruct"
    make_task = staticmethod(operators.reconstruct_task)

    def __init__(self) -> None:
        self.reports: list[tuple[str, str]] = []

    def report(self, level: set[str], message: str) -> None:
        self.reports.append((next(iter(level)), message))


TIMER, ESC = SimpleNamespace(type="TIMER", value="NOTHING"), SimpleNamespace(type="ESC", value="PRESS")


def test_modal_run_inserts_result(addon):
    """The worker thread runs the engine; the modal timer events apply the result on the main thread."""
    addon.softras.image = make_image("blob.png", blob_rgba())
    addon.softras.texture = False
    probe = ModalProbe()
    probe._start(bpy.context)
    assert runner.busy() and addon.softras.running and probe._runner.timer is not None
    assert not bpy.ops.softras.reconstruct.poll()  # one job at a time
    deadline = time.monotonic() + 60
    while (state := probe.modal(bpy.context, TIMER)) == {"PASS_THROUGH"}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert state == {"FINISHED"} and "blob" in bpy.data.objects
    assert probe.reports == [("INFO", "Added 'blob' (42 vertices)")]
    assert not runner.busy() and not addon.softras.running and probe._runner.timer is None


@pytest.mark.parametrize("how", ["esc", "cancel_button"])
def test_cancelled_run_leaves_scene_unchanged(addon, how):
    addon.softras.image = make_image("blob.png", blob_rgba())
    before = snapshot()
    probe = ModalProbe()
    probe._start(bpy.context)
    assert probe._runner.job.join(60)  # let the worker finish: its result must still be discarded
    if how == "esc":
        assert probe.modal(bpy.context, ESC) == {"CANCELLED"}
    else:
        assert bpy.ops.softras.cancel() == {"FINISHED"}
        assert probe.modal(bpy.context, TIMER) == {"CANCELLED"}
    assert snapshot() == before
    assert probe.reports == [("INFO", "Reconstruct cancelled")]
    assert not runner.busy() and not addon.softras.running and addon.softras.status == "Cancelled"
    assert probe._runner.timer is None


# ---------------------------------------------------------------------------------------------- textures
@pytest.fixture
def textured(addon, monkeypatch):
    """A reconstruction of a 160 x 128 red blob with a 64 px texture (the tiny random generator's shapes match
    their silhouettes poorly, so the viewpoint check is waived)."""
    import softras.texture

    monkeypatch.setattr(softras.texture, "MIN_VIEWPOINT_IOU", 0.0)
    addon.softras.image = make_image("blob.png", blob_rgba(128, 160))
    addon.softras.texture_size = 64
    assert addon.softras.texture  # on by default
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    return bpy.data.objects["blob"]


def _texture_node(obj):
    return next(n for n in obj.material_slots[0].material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")


def _pixels(image) -> np.ndarray:
    return np.asarray(image.pixels[:], np.float32).reshape(image.size[1], image.size[0], 4)


def test_reconstruct_with_texture_uses_a_packed_image_texture_and_keeps_vertex_colours(textured, addon):
    obj = textured
    assert "textured" in addon.softras.status
    node = _texture_node(obj)
    image = node.image
    assert image is not None and image.packed_file is not None and tuple(image.size) == (64, 64)
    assert obj[scene_io.TEXTURE_PROPERTY] == image.name and image.colorspace_settings.name == "sRGB"
    tree = obj.material_slots[0].material.node_tree
    mix = tree.nodes[scene_io.MIX_NODE]
    assert mix.inputs["Factor"].default_value == 1.0
    linked = {(l.from_node.bl_idname, l.to_node.name, l.to_socket.identifier) for l in tree.links}
    assert ("ShaderNodeTexImage", scene_io.MIX_NODE, "B_Color") in linked
    assert ("ShaderNodeVertexColor", scene_io.MIX_NODE, "A_Color") in linked
    assert any(l.from_node == mix and l.to_socket.name == "Base Color" for l in tree.links)
    assert obj.material_slots[1].material.name == scene_io.MATERIAL_NAME  # the vertex-colour alternative
    uv = obj.data.uv_layers[scene_io.UV_LAYER]
    assert len(uv.data) == 240
    # the picture is red: so are the texels that saw it
    rgb = _pixels(image)[..., :3]
    assert float(((rgb[..., 0] > 0.6) & (rgb[..., 1] < 0.35)).mean()) > 0.2


def test_reconstruct_without_texture_makes_no_image(addon):
    addon.softras.image = make_image("blob.png", blob_rgba(128, 160))
    addon.softras.texture = False
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    obj = bpy.data.objects["blob"]
    assert [s.material.name for s in obj.material_slots] == [scene_io.MATERIAL_NAME] and len(obj.data.uv_layers) == 0
    assert sorted(bpy.data.images.keys()) == ["blob foreground", "blob.png"]  # the foreground it used, no texture


def test_reconstruct_of_a_small_picture_falls_back_to_vertex_colours(addon):
    addon.softras.image = make_image("blob.png", blob_rgba())  # 48 x 40: the object spans < 64 px
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    assert "picture too small" in addon.softras.status and "textured" not in addon.softras.status
    assert [s.material.name for s in bpy.data.objects["blob"].material_slots] == [scene_io.MATERIAL_NAME]


def test_rebake_after_fitting_replaces_the_texture_pixels(textured, addon, monkeypatch):
    import softras.texture

    obj = textured
    prior = list(obj[operators.PRIOR_PROPERTY])  # the generator's azimuth probabilities, kept for re-baking
    assert len(prior) == 8 and abs(sum(prior) - 1) < 1e-4
    estimate, used = softras.texture.estimate_viewpoint, []
    monkeypatch.setattr(softras.texture, "estimate_viewpoint",
                        lambda *a, azimuth_prior=None, **k: used.append(azimuth_prior) or estimate(*a, azimuth_prior=azimuth_prior, **k))
    image = _texture_node(obj).image
    before = _pixels(image).copy()
    image.pixels.foreach_set(np.zeros(64 * 64 * 4, np.float32))
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    obj.data.vertices.foreach_set("co", co * 0.95)  # as Fit to Silhouette would move them
    assert bpy.ops.softras.rebake_texture() == {"FINISHED"}
    after = _pixels(image)
    assert "Re-baked" in addon.softras.status and image.packed_file is not None
    assert np.abs(after[..., :3] - before[..., :3]).mean() < 0.1 and after[..., :3].max() > 0.5
    assert len(used) == 1 and torch.allclose(used[0], torch.tensor(prior))


def test_a_cancelled_textured_run_adds_no_image(addon, monkeypatch):
    import softras.texture

    monkeypatch.setattr(softras.texture, "MIN_VIEWPOINT_IOU", 0.0)
    addon.softras.image = make_image("blob.png", blob_rgba(128, 160))
    addon.softras.texture_size = 64
    before = snapshot()
    probe = ModalProbe()
    probe._start(bpy.context)
    assert probe._runner.job.join(60)  # the texture is baked; it must still be discarded
    assert probe.modal(bpy.context, ESC) == {"CANCELLED"}
    assert snapshot() == before and list(bpy.data.images.keys()) == ["blob.png"]


def test_rebake_errors_leave_the_scene_unchanged(addon):
    addon.softras.image = make_image("blob.png", blob_rgba(128, 160))
    addon.softras.texture = False
    assert bpy.ops.softras.reconstruct() == {"FINISHED"}
    before = snapshot()
    with pytest.raises(RuntimeError, match="has no SoftRas texture"):
        bpy.ops.softras.rebake_texture()
    assert snapshot() == before


def _expect_error(match: str) -> None:
    before = snapshot()
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.softras.reconstruct()
    assert snapshot() == before


def test_reconstruct_errors_leave_scene_unchanged(addon, tmp_path, monkeypatch):
    sc = addon
    _expect_error("no reference image")

    sc.softras.image = missing_file_image(tmp_path)
    _expect_error("has no pixels")

    sc.softras.image = make_image("empty.png", np.zeros((16, 16, 4), np.float32))
    _expect_error("no foreground")

    sc.softras.image = make_image("blob.png", blob_rgba())
    monkeypatch.setenv("SOFTRAS_WEIGHTS", str(tmp_path / "nowhere.pt"))
    _expect_error("weights not found")

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    monkeypatch.setenv("SOFTRAS_WEIGHTS", str(corrupt))
    _expect_error("not a readable weights file")


# ---------------------------------------------------------------------------------------------- UI
class RecordingLayout:
    """Stands in for bpy.types.UILayout (which cannot be created headless): records every call and checks that
    drawn properties and operators exist."""

    def __init__(self, calls: list) -> None:
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name: str, value) -> None:  # use_property_split, enabled, scale_y, ...
        self.calls.append((name, value))

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name in ("prop", "template_ID"):
                assert args[1] in args[0].bl_rna.properties, args[1]
            if name == "operator":
                module, op = args[0].split(".")
                getattr(getattr(bpy.ops, module), op).get_rna_type()  # KeyError if it does not exist
            return RecordingLayout(self.calls)

        return call


def record(panel_or_prefs, data=None) -> list:
    """Draw a panel class (or the preferences with ``data``); the recorded layout calls."""
    calls: list = []
    target = data if data is not None else SimpleNamespace()
    target.layout = RecordingLayout(calls)
    panel_or_prefs.draw(target, bpy.context)
    return calls


def draw(panel_or_prefs, data=None) -> tuple[list[str], list[str]]:
    """Draw a panel class (or the preferences with ``data``); (label texts, operator ids)."""
    calls = record(panel_or_prefs, data)
    labels = [c[2].get("text", "") for c in calls if len(c) == 3 and c[0] == "label"]
    ops = [c[1][0] for c in calls if len(c) == 3 and c[0] == "operator"]
    return labels, ops


def test_panels_and_preferences_draw(addon, monkeypatch):
    from softras_blender import prefs, ui

    addon.softras.image = make_image("blob.png", blob_rgba())
    labels, ops = draw(ui.SOFTRAS_PT_main)
    assert ops == ["softras.reconstruct"] and not any("Not installed" in t for t in labels)
    labels, ops = draw(ui.SOFTRAS_PT_fit)
    assert ops == ["softras.fit_silhouette", "softras.rebake_texture"] and "No scene camera" in labels
    prefs_data = SimpleNamespace(weights_path="", device="AUTO", torch_build="CPU",
                                 bl_rna=prefs.SoftRasPreferences.bl_rna)
    labels, ops = draw(prefs.SoftRasPreferences, prefs_data)
    assert ops == [] and "Using the weights shipped with the add-on" in labels

    monkeypatch.setattr(deps, "_missing", ["PyTorch", "Pillow"])
    labels, ops = draw(ui.SOFTRAS_PT_main)
    assert "Not installed in Blender's Python: PyTorch, Pillow" in labels
    assert ops == ["softras.install_dependencies", "softras.reconstruct"]
    assert not bpy.ops.softras.reconstruct.poll()
    labels, ops = draw(prefs.SoftRasPreferences, prefs_data)
    assert ops == ["softras.install_dependencies"]
    monkeypatch.setattr(deps, "_missing", [])

    probe = ModalProbe()
    probe._start(bpy.context)
    labels, ops = draw(ui.SOFTRAS_PT_main)
    assert "softras.cancel" in ops
    assert probe.modal(bpy.context, ESC) == {"CANCELLED"}
    labels, ops = draw(ui.SOFTRAS_PT_main)
    assert "Cancelled" in labels


# ---------------------------------------------------------------------------------------------- images
def test_float_image_is_unpremultiplied_and_encoded_as_srgb(addon):
    rgba = blob_rgba(8, 8)
    linear = rgba.copy()
    linear[..., :3] = srgb_to_linear(rgba[..., :3]) * rgba[..., 3:]  # Blender float buffers: linear, premultiplied
    linear[0, 0] = (0.2, 0.1, 0.05, 0.5)  # a half-transparent pixel
    pixels = convert.read_pixels(make_image("float", linear, float_buffer=True))
    assert pixels.linear and pixels.premultiplied and pixels.data.dtype == np.float32
    srgb = pixels.srgb()
    np.testing.assert_allclose(srgb[1:, 1:], rgba[1:, 1:], atol=1e-4)
    np.testing.assert_allclose(srgb[0, 0], [*linear_to_srgb(np.array([0.4, 0.2, 0.1])), 0.5], atol=1e-4)

    byte = convert.read_pixels(make_image("byte", rgba))
    assert byte.data.dtype == np.uint8 and not byte.linear and not byte.premultiplied
    np.testing.assert_array_equal(byte.srgb(), np.rint(rgba * 255))  # row 0 on top, unchanged


def test_mask_from_alpha_or_luminance(addon):
    rgba = np.zeros((6, 8, 4), np.float32)
    rgba[1:3, 2:5] = (1, 1, 1, 1)
    assert np.array_equal(convert.read_pixels(make_image("alpha", rgba)).mask(), rgba[..., 3] > 0.5)
    opaque = rgba.copy()
    opaque[..., 3] = 1.0  # no transparency: white-on-black luminance
    assert np.array_equal(convert.read_pixels(make_image("lum", opaque)).mask(), rgba[..., 3] > 0.5)


# ---------------------------------------------------------------------------------------------- cameras
def add_camera(sc, name="Cam", location=(0.4, -4.0, 1.2), rotation=(1.3, 0.05, 0.1), lens=50.0, fit="AUTO",
               shift=(0.0, 0.0)) -> bpy.types.Object:
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    sc.collection.objects.link(cam)
    cam.location, cam.rotation_euler = location, Euler(rotation)
    cam.data.lens, cam.data.sensor_fit = lens, fit
    cam.data.sensor_width, cam.data.sensor_height = 36.0, 24.0
    cam.data.shift_x, cam.data.shift_y = shift
    sc.camera = cam
    bpy.context.view_layer.update()
    return cam


@pytest.mark.parametrize("lens, fit, resolution, pixel_aspect, shift", [
    (50.0, "AUTO", (64, 48), (1.0, 1.0), (0.0, 0.0)),
    (35.0, "AUTO", (48, 64), (1.0, 1.0), (0.1, -0.05)),
    (24.0, "HORIZONTAL", (64, 36), (1.0, 1.0), (-0.2, 0.1)),
    (85.0, "HORIZONTAL", (40, 64), (2.0, 1.0), (0.05, 0.15)),
    (50.0, "VERTICAL", (64, 48), (1.0, 1.0), (0.0, 0.2)),
    (30.0, "VERTICAL", (36, 64), (1.0, 1.5), (0.12, -0.1)),
    (70.0, "AUTO", (64, 60), (1.0, 2.0), (-0.1, 0.0)),
])
def test_camera_matches_world_to_camera_view(addon, lens, fit, resolution, pixel_aspect, shift):
    sc = addon
    sc.render.resolution_x, sc.render.resolution_y = resolution
    sc.render.pixel_aspect_x, sc.render.pixel_aspect_y = pixel_aspect
    cam = add_camera(sc, lens=lens, fit=fit, shift=shift)
    rng = np.random.default_rng(0)
    local = np.c_[rng.uniform(-0.6, 0.6, (40, 2)), -rng.uniform(2.0, 6.0, 40)]  # in front of the camera
    local[:, :2] *= -local[:, 2:]
    points = [cam.matrix_world @ Vector(p) for p in local]
    w, h = resolution
    expected = np.array([[v.x * w, (1 - v.y) * h] for v in (world_to_camera_view(sc, cam, p) for p in points)])
    camera = convert.camera_params(cam, sc).to_softras()
    got = camera.to_pixels(torch.tensor([tuple(p) for p in points], dtype=torch.float32), h, w)[0].numpy()
    assert np.abs(got - expected).max() < 0.5
    assert np.abs(got - expected).max() < 1e-2  # in fact exact up to float32


def test_fit_size_matches_aspect():
    for aspect in (1.0, 4 / 3, 16 / 9, 0.75, 1920 / 1081, 3.1):
        h, w = convert.fit_size(aspect, 128)
        assert 96 <= max(h, w) <= 128 and abs(w / h - aspect) / aspect < 2e-3


# ---------------------------------------------------------------------------------------------- fit
def box_mask(sc, cam, size=(1.4, 0.5, 0.6)) -> np.ndarray:
    """Mask (H, W) of an elongated box at the origin seen through ``cam``, rendered by the engine at the render
    resolution."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]) * size
    faces = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    w, h = sc.render.resolution_x, sc.render.resolution_y
    camera = convert.camera_params(cam, sc).to_softras()
    silhouette = render_silhouette(torch.tensor(corners, dtype=torch.float32), faces, camera,
                                   RasterSettings((h, w), sigma=1e-6))[0]
    return (silhouette > 0.5).float().numpy()


def mask_image(name: str, mask: np.ndarray) -> bpy.types.Image:
    """Opaque white-on-black picture of ``mask`` (read through its luminance)."""
    rgba = np.ones((*mask.shape, 4), np.float32)
    rgba[..., :3] = mask[..., None]
    return make_image(name, rgba)


def add_sphere(sc, radius=0.6) -> bpy.types.Object:
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=radius, location=(0.1, 0.0, 0.05))
    return bpy.context.active_object


def fit_scene(sc):
    sc.render.resolution_x, sc.render.resolution_y = 64, 48
    cam = add_camera(sc, location=(0.0, -4.0, 1.2), rotation=(1.28, 0.0, 0.0), lens=40.0)
    sc.softras.fit_mask = mask_image("box_mask", box_mask(sc, cam))
    sc.softras.fit_steps = 40
    return cam, add_sphere(sc)


def test_fit_to_silhouette_raises_iou(addon):
    sc = addon
    cam, sphere = fit_scene(sc)
    sphere.scale = (1.0, 1.0, 1.2)  # object space differs from world space
    bpy.context.view_layer.update()
    before = np.array([tuple(v.co) for v in sphere.data.vertices])
    assert {"REGISTER", "UNDO"} <= operators.SOFTRAS_OT_fit_silhouette.bl_options
    assert bpy.ops.softras.fit_silhouette() == {"FINISHED"}
    status = sc.softras.status
    iou_before, iou_after = (float(x) for x in status.split("IoU ")[1].split(" -> "))
    assert iou_after > iou_before + 0.1, status
    after = np.array([tuple(v.co) for v in sphere.data.vertices])
    assert after.shape == before.shape and np.abs(after - before).max() > 0.01
    # the fitted mesh's silhouette through the camera agrees with the mask
    world = np.array([tuple(sphere.matrix_world @ v.co) for v in sphere.data.vertices])
    _, triangles, _ = scene_io.mesh_world_arrays(sphere)
    sil = render_silhouette(torch.tensor(world, dtype=torch.float32), torch.tensor(triangles),
                            convert.camera_params(cam, sc).to_softras(), RasterSettings((48, 64), sigma=1e-6))[0]
    mask = box_mask(sc, cam)
    iou = ((sil > 0.5) & (mask > 0.5)).sum().item() / ((sil > 0.5) | (mask > 0.5)).sum().item()
    assert iou > iou_before + 0.1


def test_fit_multi_view_from_selected_cameras(addon):
    sc = addon
    sc.render.resolution_x, sc.render.resolution_y = 48, 48
    views = [add_camera(sc, f"Cam{i}", location=loc, rotation=rot, lens=40.0)
             for i, (loc, rot) in enumerate([((0.0, -4.0, 1.2), (1.28, 0.0, 0.0)), ((4.0, 0.0, 1.2), (1.28, 0.0, 1.5708))])]
    for cam in views:
        cam["softras_mask"] = mask_image(f"mask_{cam.name}", box_mask(sc, cam)).name
    sphere = add_sphere(sc)
    sc.softras.fit_target, sc.softras.fit_steps = sphere, 10
    for cam in views:
        cam.select_set(True)
    assert bpy.ops.softras.fit_silhouette() == {"FINISHED"}
    assert "2 views" in sc.softras.status


def _expect_fit_error(match: str) -> None:
    before = snapshot()
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.softras.fit_silhouette()
    assert snapshot() == before


def test_fit_errors_leave_scene_unchanged(addon, tmp_path):
    sc = addon
    cam, sphere = fit_scene(sc)
    mask = sc.softras.fit_mask

    sc.camera = None
    _expect_fit_error("no camera")
    sc.camera = cam

    cam.data.type = "ORTHO"
    _expect_fit_error("orthographic")
    cam.data.type = "PERSP"

    empty = bpy.data.objects.new("Empty", None)
    sc.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    _expect_fit_error("not a mesh")
    bpy.context.view_layer.objects.active = sphere

    sc.softras.fit_mask = mask_image("blank", np.zeros((48, 64), np.float32))
    _expect_fit_error("empty")

    sc.softras.fit_mask = missing_file_image(tmp_path)
    _expect_fit_error("has no pixels")

    sc.softras.fit_mask = mask_image("square", np.zeros((48, 48), np.float32))
    _expect_fit_error("aspect ratios must match")

    sc.softras.fit_mask = None
    _expect_fit_error("no mask image")
    sc.softras.fit_mask = mask


# ---------------------------------------------------------------------------------------------- dependencies
@pytest.mark.parametrize("script, ok", [
    ("print('Collecting torch==2.13.0'); print('Installing collected packages: torch'); "
     "print('Successfully installed torch-2.13.0')", True),
    ("import sys; print('ERROR: No matching distribution found for torch==2.13.0'); sys.exit(1)", False),
])
def test_install_dependencies_runs_pip_and_reports(addon, tmp_path, monkeypatch, script, ok):
    monkeypatch.setattr(deps, "target_dir", lambda create=False: str(tmp_path))
    monkeypatch.setattr(deps, "pip_command", lambda target, cuda=False: [sys.executable, "-c", script])
    if ok:
        assert bpy.ops.softras.install_dependencies() == {"FINISHED"}
        assert deps.STATE.text == "Dependencies installed" and not deps.STATE.failed and deps.STATE.progress == 1.0
    else:
        with pytest.raises(RuntimeError, match="No matching distribution"):
            bpy.ops.softras.install_dependencies()
        assert deps.STATE.failed
    assert not deps.STATE.running
    deps.STATE.text = ""


@pytest.mark.parametrize("cuda, index", [(False, "https://download.pytorch.org/whl/cpu"),
                                         (True, "https://download.pytorch.org/whl/cu130")])
def test_pip_command_pins_torch_from_the_cpu_or_cuda_index(addon, cuda, index):
    command = deps.pip_command("/some/dir", cuda=cuda)
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "torch==2.13.0" in command and command[command.index("--target") + 1] == "/some/dir"
    assert command[command.index("--index-url") + 1] == index
    assert command[command.index("--extra-index-url") + 1] == "https://pypi.org/simple"
    assert deps.pip_command("/some/dir") == deps.pip_command("/some/dir", cuda=False)  # CPU unless asked
    assert deps.missing() == []
    assert engine.resolve_device("CPU") == "cpu"


def test_install_operator_passes_the_build_to_pip(addon, tmp_path, monkeypatch):
    asked: list[bool] = []

    def pip_command(target: str, cuda: bool = False) -> list[str]:
        asked.append(cuda)
        return [sys.executable, "-c", "print('Successfully installed torch-2.13.0')"]

    monkeypatch.setattr(deps, "target_dir", lambda create=False: str(tmp_path))
    monkeypatch.setattr(deps, "pip_command", pip_command)
    assert bpy.ops.softras.install_dependencies() == {"FINISHED"}
    assert bpy.ops.softras.install_dependencies(cuda=True) == {"FINISHED"}
    assert asked == [False, True]
    deps.STATE.text = ""


@pytest.fixture
def driver_check():
    """deps.nvidia_driver's cache cleared before and after (the test fakes what it looks at)."""
    deps.nvidia_driver.cache_clear()
    yield deps.nvidia_driver
    deps.nvidia_driver.cache_clear()


@pytest.mark.parametrize("platform, proc_file, on_path, in_system32, found", [
    ("linux", True, False, False, True),
    ("linux", False, True, False, True),
    ("linux", False, False, True, False),
    ("win32", False, True, False, True),
    ("win32", False, False, True, True),
    ("win32", True, False, False, False),
    ("darwin", True, True, True, False),  # never on macOS, whatever is there
])
def test_nvidia_driver_is_found_from_files(driver_check, tmp_path, monkeypatch, platform, proc_file, on_path,
                                            in_system32, found):
    proc = tmp_path / "proc_driver_nvidia_version"
    if proc_file:
        proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.95.05\n")
    if in_system32:
        (tmp_path / "System32").mkdir()
        (tmp_path / "System32" / "nvidia-smi.exe").write_bytes(b"")

    def which(name: str) -> str | None:
        return "/usr/bin/nvidia-smi" if on_path and name == "nvidia-smi" else None

    monkeypatch.setattr(deps, "_LINUX_DRIVER_FILE", str(proc))
    monkeypatch.setenv("SystemRoot", str(tmp_path))
    monkeypatch.setattr(deps.shutil, "which", which)
    monkeypatch.setattr(sys, "platform", platform)
    assert driver_check() is found
    monkeypatch.setattr(sys, "platform", "darwin" if found else "linux")  # the opposite answer ...
    monkeypatch.setattr(deps.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert driver_check() is found  # ... only once the cache is cleared
    driver_check.cache_clear()
    assert driver_check() is not found


def install_offer(panel_or_prefs, data=None) -> tuple[list[str], bool, bool]:
    """What a dependency box offers: (labels, whether the Build choice is drawn, the Install button's ``cuda``)."""
    calls = record(panel_or_prefs, data)
    labels = [c[2].get("text", "") for c in calls if len(c) == 3 and c[0] == "label"]
    build = any(c[0] == "prop" and c[1][1] == "torch_build" for c in calls if len(c) == 3)
    button = calls.index(("operator", ("softras.install_dependencies",), {"icon": "IMPORT"}))
    assert calls[button + 1][0] == "cuda"
    return labels, build, calls[button + 1][1]


@pytest.mark.parametrize("driver", [False, True])
def test_install_offers_the_cuda_build_only_with_an_nvidia_driver(addon, monkeypatch, driver):
    from softras_blender import prefs, ui

    monkeypatch.setattr(deps, "_missing", ["PyTorch", "Pillow"])
    monkeypatch.setattr(deps, "nvidia_driver", lambda: driver)
    prefs_data = SimpleNamespace(weights_path="", device="AUTO", torch_build="CPU",
                                 bl_rna=prefs.SoftRasPreferences.bl_rna)
    labels, build, cuda = install_offer(prefs.SoftRasPreferences, prefs_data)
    assert build is driver and cuda is False  # CPU is the default choice
    assert "SoftRas needs them to run. Install downloads about 200 MB." in labels

    prefs_data.torch_build = "CUDA"
    labels, build, cuda = install_offer(prefs.SoftRasPreferences, prefs_data)
    assert build is driver and cuda is driver  # a CUDA choice left from elsewhere counts only with a driver
    size = "about 3 GB" if driver else "about 200 MB"
    assert f"SoftRas needs them to run. Install downloads {size}." in labels

    monkeypatch.setattr(prefs, "get", lambda context: prefs_data)  # the sidebar offers the same
    labels, build, cuda = install_offer(ui.SOFTRAS_PT_main)
    assert build is driver and cuda is driver
    monkeypatch.setattr(prefs, "get", lambda context: None)  # registered without being enabled: CPU only
    labels, build, cuda = install_offer(ui.SOFTRAS_PT_main)
    assert not build and cuda is False
    deps.STATE.text = ""


def test_macos_is_never_offered_the_cuda_build(addon, driver_check, tmp_path, monkeypatch):
    from softras_blender import prefs

    proc = tmp_path / "version"
    proc.write_text("NVRM version\n")
    monkeypatch.setattr(deps, "_LINUX_DRIVER_FILE", str(proc))
    monkeypatch.setattr(deps.shutil, "which", lambda name: "/usr/local/bin/nvidia-smi")
    monkeypatch.setattr(deps, "_missing", ["PyTorch"])
    prefs_data = SimpleNamespace(weights_path="", device="AUTO", torch_build="CUDA",
                                 bl_rna=prefs.SoftRasPreferences.bl_rna)
    monkeypatch.setattr(sys, "platform", "linux")
    assert install_offer(prefs.SoftRasPreferences, prefs_data)[1:] == (True, True)
    driver_check.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    labels, build, cuda = install_offer(prefs.SoftRasPreferences, prefs_data)
    assert not build and cuda is False and "SoftRas needs them to run. Install downloads about 200 MB." in labels


def device_labels() -> list[str]:
    return [t for t in draw(softras_blender.ui.SOFTRAS_PT_main)[0] if t.startswith("Device")]


def test_panel_shows_the_device_the_engine_uses(addon, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_labels() == ["Device: CPU"]
    addon.softras.device = "CUDA"
    assert device_labels() == ["Device: CUDA, but PyTorch sees no CUDA GPU"]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: pytest.fail("would initialise CUDA"))
    assert device_labels() == ["Device: CUDA"]
    addon.softras.device = "PREFERENCES"  # Auto
    assert device_labels() == ["Device: CUDA"]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce RTX 4090")
    assert device_labels() == ["Device: CUDA (NVIDIA GeForce RTX 4090)"]
    addon.softras.device = "CPU"
    assert device_labels() == ["Device: CPU"]

    addon.softras.device = "PREFERENCES"
    monkeypatch.setattr(runner, "busy", lambda: True)  # a job runs: the line from before it stays
    assert device_labels() == ["Device: CPU"]
    monkeypatch.setattr(runner, "busy", lambda: False)
    assert device_labels() == ["Device: CUDA (NVIDIA GeForce RTX 4090)"]

    with monkeypatch.context() as patch:  # engine not loaded yet: no line, and drawing does not load it
        patch.delitem(sys.modules, "softras")
        assert device_labels() == []
        assert "softras" not in sys.modules
