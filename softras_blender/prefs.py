"""Add-on preferences: engine device, generator weights file and the dependency status with its Install button
(and, where an NVIDIA driver is found, the choice of PyTorch's CPU or CUDA build)."""

import bpy
from bpy.props import EnumProperty, StringProperty

from . import deps
from .props import DEVICE_ITEMS

__all__ = ["TORCH_BUILD_ITEMS", "SoftRasPreferences", "get", "engine_settings", "install_cuda", "draw_dependencies"]

TORCH_BUILD_ITEMS = [
    ("CPU", "CPU", f"PyTorch for the CPU: runs everywhere, downloads {deps.CPU_DOWNLOAD}"),
    ("CUDA", "CUDA", f"PyTorch for NVIDIA GPUs with NVIDIA's CUDA libraries: downloads {deps.CUDA_DOWNLOAD}"),
]


class SoftRasPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO", description="Where the engine runs")
    weights_path: StringProperty(
        name="Weights", subtype="FILE_PATH", default="",
        description="Generator weights file (.pt) from 'softras train'; empty: the weights shipped with the add-on",
    )
    torch_build: EnumProperty(
        name="Build", items=TORCH_BUILD_ITEMS, default="CPU",
        description="Which PyTorch build Install downloads (offered where an NVIDIA driver is found)",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "device")
        layout.prop(self, "weights_path")
        if not self.weights_path:
            layout.label(text="Using the weights shipped with the add-on", icon="INFO")
        draw_dependencies(layout, self)


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


def install_cuda(preferences: SoftRasPreferences | None) -> bool:
    """Whether Install downloads PyTorch's CUDA build: only where an NVIDIA driver is found and the preferences
    (None: not enabled as an add-on) choose it; else the CPU build."""
    return preferences is not None and deps.nvidia_driver() and preferences.torch_build == "CUDA"


def draw_dependencies(layout: bpy.types.UILayout, preferences: SoftRasPreferences | None) -> None:
    """Dependency status: nothing when all are importable, else what is missing, the build choice (CPU or CUDA,
    only where an NVIDIA driver is found), the download size and the Install button (with the progress of a
    running install)."""
    state = deps.STATE
    missing = deps.missing()
    if not missing and not state.text:
        return
    box = layout.box()
    if missing:
        box.label(text=f"Not installed in Blender's Python: {', '.join(missing)}", icon="ERROR")
    if state.running:
        box.progress(text=state.text, factor=state.progress)
        box.operator("softras.install_dependencies_cancel", icon="CANCEL")
        return
    if state.text:
        box.label(text=state.text, icon="ERROR" if state.failed else "CHECKMARK")
    if missing:
        cuda = install_cuda(preferences)
        if preferences is not None and deps.nvidia_driver():
            box.prop(preferences, "torch_build")
        size = deps.CUDA_DOWNLOAD if cuda else deps.CPU_DOWNLOAD
        box.label(text=f"SoftRas needs them to run. Install downloads {size}.")
        box.operator("softras.install_dependencies", icon="IMPORT").cuda = cuda
