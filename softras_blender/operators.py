"""Operators: Reconstruct, Fit to Silhouette, Cancel, and the dependency installer.

Reconstruct and Fit read everything they need from Blender on the main thread (pixels, camera, mesh), run the
engine in a worker thread while a modal timer shows progress (Esc cancels and leaves the scene untouched), and
change the scene on the main thread in one undo step. In background mode, and when called with ``EXEC_DEFAULT``
(the default from Python), they run synchronously. Failures are reported as errors and change nothing.
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np

import bpy

from . import convert, deps, prefs, runner, scene, work
from .runner import Runner, Task

__all__ = ["CLASSES", "MASK_PROPERTY", "IMAGE_PROPERTY", "PRIOR_PROPERTY", "reconstruct_task", "fit_task", "rebake_task", "stop_install"]

_TIMER_STEP = 0.1  # seconds between progress polls
FOREGROUND_SOURCES = {"mask": "as painted", "border": "estimated from the border",
                      "net": "found by the foreground network"}
MASK_PROPERTY = "softras_mask"
"""Custom property of a camera object naming its mask image (multi-view Fit to Silhouette)."""
IMAGE_PROPERTY = "softras_image"
"""Custom property of a reconstruction naming the reference image it came from (Re-bake Texture)."""
PRIOR_PROPERTY = "softras_azimuth_prior"
"""Custom property of a reconstruction: the generator's azimuth probabilities for its picture (Re-bake Texture)."""


class _JobOperator:
    """Mixin for operators that run a :class:`~.runner.Task`. Subclasses set ``make_task(context) -> Task``, which
    reads Blender data on the main thread and raises ValueError with a user-facing message for bad input."""

    _runner: Runner | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if missing := deps.missing():
            cls.poll_message_set(f"Install {', '.join(missing)} first: Preferences > Add-ons > SoftRas")
            return False
        return context.scene is not None and not runner.busy()

    def _finish(self, state: str, message: str) -> set[str]:
        if state == "FINISHED":
            self.report({"INFO"}, message)
        elif message:
            self.report({"ERROR"}, message)
        else:
            self.report({"INFO"}, f"{self.bl_label} cancelled")
        return {state}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            task = self.make_task(context)
        except ValueError as error:
            return self._finish("CANCELLED", str(error))
        return self._finish(*runner.run_blocking(task, context))

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._start(context)
        except ValueError as error:
            return self._finish("CANCELLED", str(error))
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start(self, context: bpy.types.Context) -> None:
        """Read the inputs and start the worker with a progress timer (raises ValueError for bad input)."""
        task = self.make_task(context)
        self._runner = Runner(task, context.window_manager.event_timer_add(_TIMER_STEP, window=context.window))
        self._runner.start(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            self._runner.cancel(context)
            return self._finish("CANCELLED", "")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state, message = self._runner.step(context)
        return {"PASS_THROUGH"} if state == "RUNNING_MODAL" else self._finish(state, message)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (file load, window closed): stop the job."""
        if self._runner is not None:
            self._runner.cancel(context)


def _object_name(image: bpy.types.Image) -> str:
    """The image's name without an image file extension ('chair.png' -> 'chair', 'chair.001' stays)."""
    stem, ext = os.path.splitext(image.name)
    return stem if stem and ext.lower() in bpy.path.extensions_image else image.name


def reconstruct_task(context: bpy.types.Context) -> Task:
    """Reconstruct the panel's reference image: read its pixels now, predict in the worker, insert the mesh at the
    3D cursor (as it is now) in the current scene, selected and active."""
    props = context.scene.softras
    image = props.image
    if image is None:
        raise ValueError("no reference image: choose one in the SoftRas panel")
    painted = scene.painted_foreground(image)  # the artist's corrections of the last foreground, if any
    request = work.ReconstructRequest(
        convert.read_pixels(image), *prefs.engine_settings(context), refine_steps=props.refine_steps,
        texture_size=props.texture_size if props.texture else 0,
        mask=None if painted is None else convert.read_pixels(painted).mask(),
    )
    name, location, smooth = _object_name(image), tuple(context.scene.cursor.location), props.smooth
    scene_name, image_name = context.scene.name, image.name

    def apply(ctx: bpy.types.Context, result: work.ReconstructResult) -> str:
        target = bpy.data.scenes.get(scene_name)
        if target is None:
            raise ValueError(f"scene '{scene_name}' was removed while reconstructing")
        view_layer = ctx.view_layer if ctx.scene == target else target.view_layers[0]
        texture = None if result.texture is None else (result.texture.uv, result.texture.image)
        obj = scene.insert_mesh(target, name, convert.y_up_to_z_up(result.vertices), result.faces, result.colors,
                                location, smooth, view_layer, texture)
        obj[IMAGE_PROPERTY] = image_name
        reference = bpy.data.images.get(image_name)
        shown = ""
        if reference is not None and result.foreground is not None:
            foreground = scene.store_foreground(reference, result.foreground)
            if result.foreground_source != "alpha":  # (a picture's own alpha needs no word)
                shown = f"; foreground {FOREGROUND_SOURCES.get(result.foreground_source, result.foreground_source)} in '{foreground.name}'"
        if result.azimuth_prior is not None:
            obj[PRIOR_PROPERTY] = [float(p) for p in result.azimuth_prior]
        refined = f", silhouette IoU {result.iou[0]:.3f} -> {result.iou[1]:.3f}" if result.iou else ""
        textured = ", textured" if result.texture is not None else ""
        fallback = f"; {result.texture_message}" if result.texture_message else ""
        return f"Added '{obj.name}' ({len(result.vertices)} vertices{refined}{textured}){shown}{fallback}"

    return Task("Reconstruct", functools.partial(work.reconstruct, request), apply, scene_name)


class SOFTRAS_OT_reconstruct(_JobOperator, bpy.types.Operator):
    """Reconstruct a coloured mesh from the reference image and add it at the 3D cursor"""

    bl_idname = "softras.reconstruct"
    bl_label = "Reconstruct"
    bl_options = {"REGISTER", "UNDO"}

    make_task = staticmethod(reconstruct_task)


def _fit_views(context: bpy.types.Context) -> tuple[tuple[convert.CameraParams, convert.Pixels], ...]:
    """(camera, mask) pairs: selected cameras that carry a ``softras_mask`` custom property (multi-view), else the
    scene camera with the panel's mask."""
    sc = context.scene
    tagged = sorted((o for o in context.selected_objects if o.type == "CAMERA" and MASK_PROPERTY in o), key=lambda o: o.name)
    if tagged:
        pairs = []
        for cam in tagged:
            image = bpy.data.images.get(str(cam[MASK_PROPERTY]))
            if image is None:
                raise ValueError(f"camera '{cam.name}': no image named '{cam[MASK_PROPERTY]}' (custom property {MASK_PROPERTY})")
            pairs.append((cam, image))
    else:
        if sc.camera is None:
            raise ValueError("the scene has no camera: set one in Scene Properties")
        if sc.softras.fit_mask is None:
            raise ValueError("no mask image: choose one under Fit to Silhouette")
        pairs = [(sc.camera, sc.softras.fit_mask)]
    rx, ry = sc.render.resolution_x, sc.render.resolution_y
    views = []
    for cam, image in pairs:
        params = convert.camera_params(cam, sc)
        pixels = convert.read_pixels(image)
        h, w = pixels.data.shape[:2]
        if abs(w / h - rx / ry) > 0.01 * rx / ry:
            raise ValueError(f"mask '{image.name}' is {w}x{h} but the render is {rx}x{ry}: the aspect ratios must match")
        views.append((params, pixels))
    return tuple(views)


def fit_task(context: bpy.types.Context) -> Task:
    """Fit the target (or active) mesh to the views of :func:`_fit_views`: read mesh, cameras and masks now, refine
    in the worker, write the vertices back in object space."""
    props = context.scene.softras
    target = props.fit_target or context.active_object
    if target is None:
        raise ValueError("no mesh to fit: make a mesh active or set the Target")
    vertices, triangles, matrix = scene.mesh_world_arrays(target)
    views = _fit_views(context)
    request = work.FitRequest(vertices, triangles, views, props.fit_steps, prefs.engine_settings(context)[1])
    target_name = target.name

    def apply(ctx: bpy.types.Context, result: work.FitResult) -> str:
        obj = bpy.data.objects.get(target_name)
        if obj is None or obj.type != "MESH":
            raise ValueError(f"'{target_name}' was removed while fitting")
        scene.set_world_vertices(obj, result.vertices, matrix)
        return (f"Fitted '{obj.name}' to {len(views)} view{'s' * (len(views) > 1)} in {result.steps_run} steps: "
                f"IoU {result.iou_before:.3f} -> {result.iou_after:.3f}")

    return Task("Fit to Silhouette", functools.partial(work.fit, request), apply, context.scene.name)


class SOFTRAS_OT_fit_silhouette(_JobOperator, bpy.types.Operator):
    """Deform the target mesh so that its silhouette through the scene camera matches the mask image. With cameras
    selected that carry a 'softras_mask' custom property (an image name), fit to all of them at once"""

    bl_idname = "softras.fit_silhouette"
    bl_label = "Fit to Silhouette"
    bl_options = {"REGISTER", "UNDO"}

    make_task = staticmethod(fit_task)


def rebake_task(context: bpy.types.Context) -> Task:
    """Bake the texture of a textured reconstruction (the Fit target, else the active object) again from its
    reference image, for its current vertices (after Fit to Silhouette): the viewpoint is estimated anew and the
    texture image's pixels are replaced (and packed) in one undo step. A fallback changes nothing."""
    props = context.scene.softras
    obj = props.fit_target or context.active_object
    if obj is None or obj.type != "MESH":
        raise ValueError("no mesh to re-bake: make a textured SoftRas reconstruction active")
    texture = bpy.data.images.get(str(obj.get(scene.TEXTURE_PROPERTY, "")))
    if texture is None:
        raise ValueError(f"'{obj.name}' has no SoftRas texture to re-bake (reconstruct it with Texture on)")
    reference = bpy.data.images.get(str(obj.get(IMAGE_PROPERTY, "")))
    if reference is None:
        raise ValueError(f"the reference image of '{obj.name}' ({obj.get(IMAGE_PROPERTY)!r}) is no longer in the file")
    vertices, faces, colors = scene.engine_mesh_arrays(obj)
    prior = obj.get(PRIOR_PROPERTY)
    prior = None if prior is None else np.asarray(list(prior), np.float32)
    request = work.RebakeRequest(vertices, faces, colors, convert.read_pixels(reference), texture.size[0], prior)
    object_name, texture_name, reference_name = obj.name, texture.name, reference.name

    def apply(ctx: bpy.types.Context, result: tuple[work.BakedTexture | None, str | None]) -> str:
        baked, message = result
        if baked is None:
            raise ValueError(message)
        image = bpy.data.images.get(texture_name)
        if image is None:
            raise ValueError(f"texture '{texture_name}' was removed while baking")
        scene.set_texture_pixels(image, baked.image)
        return f"Re-baked the texture of '{object_name}' from '{reference_name}'"

    return Task("Re-bake Texture", functools.partial(work.rebake, request), apply, context.scene.name)


class SOFTRAS_OT_rebake_texture(_JobOperator, bpy.types.Operator):
    """Bake the texture of a SoftRas reconstruction again from its reference picture, for its current shape (after
    Fit to Silhouette); the viewpoint is estimated again"""

    bl_idname = "softras.rebake_texture"
    bl_label = "Re-bake Texture"
    bl_options = {"REGISTER", "UNDO"}

    make_task = staticmethod(rebake_task)


class SOFTRAS_OT_cancel(bpy.types.Operator):
    """Stop the running SoftRas job; the scene is left as it was"""

    bl_idname = "softras.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runner.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        runner.request_cancel()
        return {"FINISHED"}


_installer: deps.Installer | None = None
_install_timer: bpy.types.Timer | None = None


def _redraw_preferences(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"PREFERENCES", "VIEW_3D"}:
                area.tag_redraw()


def _remove_install_timer(context: bpy.types.Context) -> None:
    global _install_timer
    if _install_timer is not None:
        context.window_manager.event_timer_remove(_install_timer)
        _install_timer = None


def stop_install(context: bpy.types.Context) -> None:
    """Terminate a running install and remove its timer at once (unregister)."""
    global _installer
    if _installer is not None:
        _installer.cancel()
        _installer = None
        deps.STATE.running, deps.STATE.failed, deps.STATE.text = False, True, "Install cancelled"
    _remove_install_timer(context)


class SOFTRAS_OT_install_dependencies(bpy.types.Operator):
    """Download PyTorch (the CPU build, or the CUDA build for NVIDIA GPUs) and Pillow with pip into this add-on's
    user folder. Needs internet access"""

    bl_idname = "softras.install_dependencies"
    bl_label = "Install Dependencies"

    cuda: bpy.props.BoolProperty(
        name="CUDA Build", default=False, options={"SKIP_SAVE"},
        description=f"Install PyTorch's CUDA build for NVIDIA GPUs ({deps.CUDA_DOWNLOAD}) instead of its CPU build "
                    f"({deps.CPU_DOWNLOAD})",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _installer is None

    def _start(self) -> bool:
        global _installer
        target = deps.target_dir(create=True)
        if not target:
            self.report({"ERROR"}, "cannot create the add-on's user folder for the dependencies")
            return False
        _installer = deps.Installer(deps.pip_command(target, cuda=self.cuda))
        try:
            _installer.start()
        except OSError as error:
            _installer = None
            self.report({"ERROR"}, f"cannot run pip: {error}")
            return False
        return True

    def _finish(self, context: bpy.types.Context, code: int) -> set[str]:
        global _installer
        _installer = None
        _remove_install_timer(context)
        _redraw_preferences(context)
        if code == 0 and not deps.STATE.failed:
            self.report({"INFO"}, deps.STATE.text)
            return {"FINISHED"}
        self.report({"ERROR"}, deps.STATE.text)
        return {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self._start():
            return {"CANCELLED"}
        while (code := _installer.poll()) is None:
            time.sleep(_TIMER_STEP)
        return self._finish(context, code)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        global _install_timer
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if not self._start():
            return {"CANCELLED"}
        _install_timer = context.window_manager.event_timer_add(_TIMER_STEP, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if _installer is None:  # stopped by unregister
            return {"CANCELLED"}
        code = _installer.poll()
        _redraw_preferences(context)
        return {"PASS_THROUGH"} if code is None else self._finish(context, code)


class SOFTRAS_OT_install_dependencies_cancel(bpy.types.Operator):
    """Stop the running dependency install (pip is terminated; the install operator then ends)"""

    bl_idname = "softras.install_dependencies_cancel"
    bl_label = "Cancel Install"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _installer is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        _installer.cancel()
        return {"FINISHED"}


CLASSES = (
    SOFTRAS_OT_reconstruct,
    SOFTRAS_OT_fit_silhouette,
    SOFTRAS_OT_rebake_texture,
    SOFTRAS_OT_cancel,
    SOFTRAS_OT_install_dependencies,
    SOFTRAS_OT_install_dependencies_cancel,
)
