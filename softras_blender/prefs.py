"""Add-on preferences: engine device, generator weights file and the dependency status with its Install button."""

import bpy
from bpy.props import EnumProperty, StringProperty

from . import deps
from .props import DEVICE_ITEMS

__all__ = ["SoftRasPreferences", "get", "engine_settings", "draw_dependencies"]


class SoftRasPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO", description="Where the engine runs")
    weights_path: StringProperty(
        name="Weights", subtype="FILE_PATH", default="",
        description="Generator weights file (.pt) from 'softras train'; empty: the weights shipped with the add-on",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "device")
        layout.prop(self, "weights_path")
        if not self.weights_path:
            layout.label(text="Using the weights shipped with the add-on", icon="INFO")
        draw_dependencies(layout)


def get(context: bpy.types.Context) -> SoftRasPreferences | None:
    """This add-on's preferences, or None when it was registered without being enabled as an add-on (tests)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def engine_settings(context: bpy.types.Context) -> tuple[str | None, str]:
    """(weights file or None for the engine's default, device 'AUTO' / 'CPU' / 'CUDA') for the current scene: the
    scene's device unless it defers to the preferences; the weights path made absolute."""
    prefs = get(context)
    weights = bpy.path.abspath(prefs.weights_path) if prefs is not None and prefs.weights_path else None
    device = context.scene.softras.device
    if device == "PREFERENCES":
        device = prefs.device if prefs is not None else "AUTO"
    return weights, device


def draw_dependencies(layout: bpy.types.UILayout) -> None:
    """Dependency status: nothing when all are importable, else what is missing and the Install button (with the
    progress of a running install)."""
    state = deps.STATE
    missing = deps.missing()
    if not missing and not state.text:
        return
    box = layout.box()
    if missing:
        box.label(text=f"Not installed in Blender's Python: {', '.join(missing)}", icon="ERROR")
        box.label(text="SoftRas needs them to run. Install downloads about 200 MB.")
    if state.running:
        box.progress(text=state.text, factor=state.progress)
        box.operator("softras.install_dependencies_cancel", icon="CANCEL")
    else:
        if state.text:
            box.label(text=state.text, icon="ERROR" if state.failed else "CHECKMARK")
        if missing:
            box.operator("softras.install_dependencies", icon="IMPORT")
