"""Per-scene settings and state of the add-on: ``scene.softras``."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

__all__ = ["DEVICE_ITEMS", "SoftRasSceneProps"]

DEVICE_ITEMS = [
    ("AUTO", "Auto", "CUDA if PyTorch sees a CUDA GPU, else the CPU"),
    ("CPU", "CPU", "Run the engine on the CPU"),
    ("CUDA", "CUDA", "Run the engine on the first CUDA GPU"),
]


def _is_mesh(_self: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    return obj.type == "MESH"


class SoftRasSceneProps(bpy.types.PropertyGroup):
    """Inputs of the SoftRas panel and the progress of the running job (shown in the panel)."""

    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="Reference picture of one object, best seen from about 30 degrees above")
    refine_steps: IntProperty(
        name="Refine Steps", default=0, min=0, soft_max=500, max=5000,
        description="After prediction, deform the mesh this many steps to match the picture's silhouette "
                    "(the viewpoint is estimated); 0 skips refinement",
    )
    device: EnumProperty(
        name="Device", items=[("PREFERENCES", "Preferences", "Use the device set in the add-on preferences")]
        + DEVICE_ITEMS, default="PREFERENCES", description="Where the engine runs",
    )
    smooth: BoolProperty(name="Smooth Shading", default=True, description="Shade the new mesh smooth")
    texture: BoolProperty(
        name="Texture", default=True,
        description="Bake a texture from the full-resolution picture through the estimated viewpoint (hidden parts: "
                    "the mirror-symmetric side, else the vertex colours); the material can switch back to vertex colours",
    )
    texture_size: IntProperty(name="Texture Size", default=1024, min=64, max=8192, soft_max=4096,
                              description="Side of the baked texture in pixels")
    fit_target: PointerProperty(
        name="Target", type=bpy.types.Object, poll=_is_mesh,
        description="Mesh to fit; empty: the active object",
    )
    fit_mask: PointerProperty(
        name="Mask", type=bpy.types.Image,
        description="Silhouette seen through the scene camera, at the render's aspect ratio: alpha if the image "
                    "has transparency, else luminance; above 0.5 is the object",
    )
    fit_steps: IntProperty(name="Fit Steps", default=100, min=1, soft_max=500, max=5000,
                           description="Optimisation steps of Fit to Silhouette")
    status: StringProperty(name="Status", description="Outcome of the last SoftRas run")
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    running: BoolProperty(name="Running", description="A SoftRas job is running for this scene")
