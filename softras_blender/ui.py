"""The SoftRas tab of the 3D Viewport's sidebar (N panel)."""

from __future__ import annotations

import bpy

from . import deps, prefs, runner

__all__ = ["CLASSES"]


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
            prefs.draw_dependencies(layout)
        layout.template_ID(props, "image", new="image.new", open="image.open")
        if props.image is not None:
            layout.template_icon(icon_value=layout.icon(props.image), scale=6.0)
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(props, "refine_steps")
        col.prop(props, "device")
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


def _draw_progress(layout: bpy.types.UILayout, props: bpy.types.PropertyGroup) -> None:
    if props.running and runner.busy():
        row = layout.row(align=True)
        row.progress(text=props.status, factor=props.progress)
        row.operator("softras.cancel", text="", icon="CANCEL")
    elif props.status:
        layout.label(text=props.status)


CLASSES = (SOFTRAS_PT_main, SOFTRAS_PT_fit)
