"""The SoftRas tab of the 3D Viewport's sidebar (N panel)."""

from __future__ import annotations

import sys

import bpy

from . import deps, engine, prefs, runner, scene

__all__ = ["CLASSES", "device_line"]

_device_shown: tuple[str, str] | None = None  # the last device_line, kept while a job runs


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SoftRas"


class SOFTRAS_PT_main(_SidebarPanel, bpy.types.Panel):
    bl_label = "SoftRas"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        props = context.scene.softras
        if deps.missing():
            prefs.draw_dependencies(layout, prefs.get(context))
        layout.template_ID(props, "image", new="image.new", open="image.open")
        if props.image is not None:
            foreground = scene.foreground_image(props.image)
            row = layout.row()
            row.template_icon(icon_value=layout.icon(props.image), scale=6.0)
            if foreground is not None:  # what the last Reconstruct took for the object; paint it to correct it
                foreground.preview_ensure()
                row.template_icon(icon_value=layout.icon(foreground), scale=6.0)
                layout.label(text=f"Foreground: '{foreground.name}' (paint it in the Image Editor, then Reconstruct)",
                             icon="IMAGE_ALPHA")
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(props, "refine_steps")
        col.prop(props, "device")
        if line := device_line(context):
            col.label(text=line[0], icon=line[1])
        col.prop(props, "smooth")
        col.prop(props, "texture")
        sub = col.column()
        sub.enabled = props.texture
        sub.prop(props, "texture_size")
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not runner.busy()
        row.operator("softras.reconstruct", icon="MESH_ICOSPHERE")
        _draw_progress(layout, props)


class SOFTRAS_PT_fit(_SidebarPanel, bpy.types.Panel):
    bl_label = "Fit to Silhouette"
    bl_parent_id = "SOFTRAS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        props = context.scene.softras
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(props, "fit_target")
        if props.fit_target is None:
            active = context.active_object
            col.label(text=f"Fits the active object ({active.name})" if active else "Fits the active object", icon="INFO")
        col.template_ID(props, "fit_mask", open="image.open")
        camera = context.scene.camera
        col.label(text=f"Camera: {camera.name}" if camera else "No scene camera", icon="CAMERA_DATA" if camera else "ERROR")
        col.prop(props, "fit_steps")
        layout.label(text="Several views: select cameras with a 'softras_mask' property")
        row = layout.row()
        row.enabled = not runner.busy()
        row.operator("softras.fit_silhouette", icon="MOD_SHRINKWRAP")
        row = layout.row()
        row.enabled = not runner.busy()
        row.operator("softras.rebake_texture", icon="TEXTURE")


def device_line(context: bpy.types.Context) -> tuple[str, str] | None:
    """(text, icon) naming the device the engine uses with the current settings: 'Device: CPU', 'Device: CUDA'
    (with the GPU's name, e.g. 'Device: CUDA (NVIDIA GeForce RTX 4090)', once a run has initialised CUDA: reading
    it earlier would initialise CUDA here), or an error when CUDA is chosen but unavailable. None until the engine
    is loaded: drawing never imports torch or the engine. While a job runs the line from before it is kept, as
    :func:`.engine.resolve_device` would wait for a job that is loading the engine or weights."""
    global _device_shown
    if runner.busy():
        return _device_shown
    torch = sys.modules.get("torch")
    if torch is None or "softras" not in sys.modules:
        _device_shown = None
        return None
    try:
        device = engine.resolve_device(prefs.engine_settings(context)[1])
    except ValueError:
        _device_shown = ("Device: CUDA, but PyTorch sees no CUDA GPU", "ERROR")
        return _device_shown
    if device == "cuda":
        name = f" ({torch.cuda.get_device_name()})" if torch.cuda.is_initialized() else ""
        _device_shown = (f"Device: CUDA{name}", "NONE")
    else:
        _device_shown = ("Device: CPU", "NONE")
    return _device_shown


def _draw_progress(layout: bpy.types.UILayout, props: bpy.types.PropertyGroup) -> None:
    if props.running and runner.busy():
        row = layout.row(align=True)
        row.progress(text=props.status, factor=props.progress)
        row.operator("softras.cancel", text="", icon="CANCEL")
    elif props.status:
        layout.label(text=props.status)


CLASSES = (SOFTRAS_PT_main, SOFTRAS_PT_fit)
