"""Scene-side mesh I/O: insert a reconstructed coloured mesh, read a mesh for fitting and write fitted vertices back.

:func:`insert_mesh` is the single place that turns engine output into a Blender object; the operators and the
headless batch tool both use it. Colours arrive as sRGB and are stored linear (Blender's colour attributes are
scene-linear) in a FLOAT_COLOR attribute on the POINT domain, which a shared material reads into its Principled BSDF,
so the colours show in Material Preview, Rendered view and renders.
"""

from __future__ import annotations

from typing import Sequence

import bpy
import numpy as np

from . import engine
from .convert import z_up_to_y_up

__all__ = ["COLOR_ATTRIBUTE", "MATERIAL_NAME", "UV_LAYER", "MIX_NODE", "TEXTURE_PROPERTY", "insert_mesh", "color_material",
           "texture_material", "set_texture_pixels", "mesh_world_arrays", "set_world_vertices", "engine_mesh_arrays",
           "FOREGROUND_PROPERTY", "STAMP_PROPERTY", "foreground_image", "painted_foreground", "store_foreground"]

COLOR_ATTRIBUTE = "Color"
MATERIAL_NAME = "SoftRas Vertex Color"
UV_LAYER = "UVMap"
MIX_NODE = "Texture or Vertex Color"
"""Name of the Mix node of a textured material: Factor 1 shows the texture, 0 the vertex colours."""
TEXTURE_PROPERTY = "softras_texture"
"""Custom property of a textured reconstruction: the name of its texture image (for re-baking)."""
FOREGROUND_PROPERTY = "softras_foreground"
"""Custom property of a reference image: the name of the image holding the foreground Reconstruct used for it."""
STAMP_PROPERTY = "softras_stamp"
"""Custom property of a foreground image: a digest of the pixels Reconstruct stored; other pixels were painted."""


def _digest(image: bpy.types.Image) -> str:
    import hashlib

    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def foreground_image(reference: bpy.types.Image) -> bpy.types.Image | None:
    """The foreground image Reconstruct stored for ``reference`` (None if none, or if it was deleted)."""
    return bpy.data.images.get(str(reference.get(FOREGROUND_PROPERTY, "")))


def painted_foreground(reference: bpy.types.Image) -> bpy.types.Image | None:
    """``reference``'s foreground image if the artist painted over it since Reconstruct stored it (its pixels differ
    from the stored ones), else None. Raises ValueError where a painted foreground is not the reference's size."""
    image = foreground_image(reference)
    if image is None or image.get(STAMP_PROPERTY) == _digest(image):
        return None
    if tuple(image.size) != tuple(reference.size):
        raise ValueError(f"the foreground '{image.name}' is {image.size[0]}x{image.size[1]} but the reference "
                         f"'{reference.name}' is {reference.size[0]}x{reference.size[1]}: paint it at the reference's size")
    return image


def store_foreground(reference: bpy.types.Image, mask: np.ndarray) -> bpy.types.Image:
    """Put ``mask`` (H, W) uint8 (255 = object), row 0 at the top, into ``reference``'s foreground image (a new one,
    '<reference> foreground', the first time), white on black, packed, and stamp it as unpainted."""
    h, w = mask.shape
    image = foreground_image(reference)
    if image is None:
        stem = reference.name.rsplit(".", 1)[0] if "." in reference.name else reference.name
        image = bpy.data.images.new(f"{stem} foreground", w, h, alpha=False)
        reference[FOREGROUND_PROPERTY] = image.name
    elif tuple(image.size) != (w, h):
        image.scale(w, h)
    grey = np.repeat((mask[::-1] / 255.0).astype(np.float32)[..., None], 4, axis=2)  # Blender's rows start at the bottom
    grey[..., 3] = 1.0
    image.pixels.foreach_set(grey.ravel())
    image.update()
    image.pack()
    image[STAMP_PROPERTY] = _digest(image)
    return image


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    engine.load()
    from softras.colorspace import srgb_to_linear

    return srgb_to_linear(c)


def _validate(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3 or not np.isfinite(vertices).all():
        raise ValueError(f"vertices must be a finite (V >= 3, 3) array, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces must be a (F >= 1, 3) array of indices into {len(vertices)} vertices")
    if colors.shape != vertices.shape:
        raise ValueError(f"colors must have shape {vertices.shape}, got {colors.shape}")


def _shaded_material(name: str) -> tuple[bpy.types.Material, bpy.types.Node, bpy.types.Node]:
    """A new node material ``name`` holding a Principled BSDF (roughness 0.8) wired to the output and a Color
    Attribute node reading ``COLOR_ATTRIBUTE`` (not linked yet); returns the material, that node and the BSDF."""
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    attribute = nodes.new("ShaderNodeVertexColor")
    attribute.layer_name = COLOR_ATTRIBUTE
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = 0.8
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (300, 0)
    links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    return material, attribute, bsdf


def color_material() -> bpy.types.Material:
    """The shared material ``MATERIAL_NAME`` (created on first use): a Color Attribute node reading
    ``COLOR_ATTRIBUTE`` into a Principled BSDF's Base Color."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        return material
    material, attribute, bsdf = _shaded_material(MATERIAL_NAME)
    attribute.location = (-300, 0)
    material.node_tree.links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def set_texture_pixels(image: bpy.types.Image, pixels: np.ndarray) -> None:
    """Write (H, W, 3) uint8 sRGB pixels, row 0 at the top, into a byte image of that size and pack it into the
    .blend (so the file carries it)."""
    h, w = pixels.shape[:2]
    if tuple(image.size) != (w, h):
        image.scale(w, h)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = pixels[::-1] / 255.0  # Blender's rows start at the bottom; byte images hold sRGB values
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    image.pack()


def texture_material(name: str, image: bpy.types.Image) -> bpy.types.Material:
    """A new material ``SoftRas Texture <name>``: an Image Texture node sampling ``image`` through ``UV_LAYER`` and a
    Color Attribute node reading ``COLOR_ATTRIBUTE``, mixed by the node ``MIX_NODE`` (Factor 1: the texture, 0: the
    vertex colours, the alternative) into a Principled BSDF's Base Color."""
    material, attribute, bsdf = _shaded_material(f"SoftRas Texture {name}")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_LAYER
    uv.location = (-700, 100)
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Linear"
    texture.extension = "EXTEND"
    texture.location = (-500, 100)
    attribute.location = (-500, -200)
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.name = mix.label = MIX_NODE
    mix.inputs["Factor"].default_value = 1.0
    mix.location = (-200, 0)
    links.new(uv.outputs["UV"], texture.inputs["Vector"])
    links.new(attribute.outputs["Color"], mix.inputs["A"])
    links.new(texture.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    return material


def insert_mesh(
    scene: bpy.types.Scene,
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors_srgb: np.ndarray,
    location: Sequence[float] = (0.0, 0.0, 0.0),
    smooth: bool = False,
    view_layer: bpy.types.ViewLayer | None = None,
    texture: tuple[np.ndarray, np.ndarray] | None = None,
) -> bpy.types.Object:
    """Add a triangle mesh with per-vertex colours to ``scene`` and return the new object.

    Args:
        scene: where the object is linked: ``view_layer``'s active collection if a view layer is given, else the
            scene's master collection.
        name: object and mesh name (Blender appends .001 etc. on clashes).
        vertices: (V, 3) float, Blender object space (Z-up, scene units); use ``convert.y_up_to_z_up`` on engine output.
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.
        colors_srgb: (V, 3) float sRGB in [0, 1]; stored linear (alpha 1) in the FLOAT_COLOR / POINT attribute
            ``COLOR_ATTRIBUTE``, which becomes the active and render colour attribute.
        location: object location, world frame (e.g. the 3D cursor).
        smooth: smooth shading (else flat).
        view_layer: if given, the new object is selected and made active there and every other object deselected.
        texture: (uv (F, 3, 2) float per face corner with v down, image (S, S, 3) uint8 sRGB row 0 at the top), or
            None: the UVs go to the layer ``UV_LAYER`` (v up, as Blender has it), the image to a packed image
            ``<name> texture`` used by :func:`texture_material`, which takes the first material slot; the shared
            vertex-colour material stays in the second slot, and the texture material can mix back to it.
    Raises:
        ValueError: malformed arrays (checked before anything is created).
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces)
    c = np.asarray(colors_srgb, np.float64)
    _validate(v, f, c)
    if texture is not None and (np.shape(texture[0]) != (len(f), 3, 2) or np.ndim(texture[1]) != 3):
        raise ValueError(f"texture must be uv ({len(f)}, 3, 2) and an (S, S, 3) image")
    rgba = np.ones((len(v), 4), np.float32)
    rgba[:, :3] = _srgb_to_linear(c)

    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(v))
    mesh.vertices.foreach_set("co", v.astype(np.float32).ravel())
    mesh.loops.add(f.size)
    mesh.loops.foreach_set("vertex_index", f.astype(np.int32).ravel())
    mesh.polygons.add(len(f))
    mesh.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.update(calc_edges=True)
    if smooth:
        mesh.shade_smooth()
    else:
        mesh.shade_flat()
    if texture is not None:
        uv = np.asarray(texture[0], np.float32).reshape(-1, 2) * [1, -1] + [0, 1]
        mesh.uv_layers.new(name=UV_LAYER).data.foreach_set("uv", uv.astype(np.float32).ravel())
        image = bpy.data.images.new(f"{name} texture", texture[1].shape[1], texture[1].shape[0], alpha=False)
        set_texture_pixels(image, np.asarray(texture[1], np.uint8))
        mesh.materials.append(texture_material(name, image))
    mesh.materials.append(color_material())

    obj = bpy.data.objects.new(name, mesh)
    if texture is not None:
        obj[TEXTURE_PROPERTY] = image.name
    obj.location = tuple(location)
    collection = view_layer.active_layer_collection.collection if view_layer is not None else scene.collection
    collection.objects.link(obj)
    if view_layer is not None:
        for other in view_layer.objects:
            if other.select_get(view_layer=view_layer):
                other.select_set(False, view_layer=view_layer)
        obj.select_set(True, view_layer=view_layer)
        view_layer.objects.active = obj
    return obj


def mesh_world_arrays(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mesh object's base mesh (no modifiers) for fitting.

    Returns:
        ``(vertices (V, 3) float64 world frame (matrix_world @ co), triangles (F, 3) int64 from the mesh's loop
        triangulation, matrix_world (4, 4) float64)``.
    Raises:
        ValueError: not a mesh, in Edit Mode, with shape keys, without faces, or with a non-invertible transform.
    """
    if obj is None or obj.type != "MESH":
        raise ValueError(f"'{getattr(obj, 'name', None)}' is not a mesh object")
    if obj.mode != "OBJECT":
        raise ValueError(f"'{obj.name}' is in {obj.mode.replace('_', ' ').title()} Mode; switch to Object Mode")
    mesh = obj.data
    if mesh.shape_keys is not None:
        raise ValueError(f"'{obj.name}' has shape keys; fitting would be overridden by them")
    mesh.calc_loop_triangles()
    if len(mesh.loop_triangles) == 0:
        raise ValueError(f"'{obj.name}' has no faces to fit")
    matrix = np.array(obj.matrix_world, np.float64)
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise ValueError(f"'{obj.name}' has a zero scale; its transform cannot be inverted")
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    world = co.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    return world, tris.reshape(-1, 3).astype(np.int64), matrix


def engine_mesh_arrays(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reconstruction's mesh back in the engine's object frame, for re-baking: ``(vertices (V, 3) float32, Y-up,
    from the object-space coordinates; faces (F, 3) int64 in polygon order; colours (V, 3) sRGB from
    ``COLOR_ATTRIBUTE``)``. Raises ValueError when the mesh is not all triangles or has no such attribute."""
    mesh = obj.data
    if any(len(p.vertices) != 3 for p in mesh.polygons):
        raise ValueError(f"'{obj.name}' is no longer all triangles; its texture layout no longer applies")
    attribute = mesh.color_attributes.get(COLOR_ATTRIBUTE)
    if attribute is None or attribute.domain != "POINT":
        raise ValueError(f"'{obj.name}' has no '{COLOR_ATTRIBUTE}' vertex colours (not a SoftRas reconstruction?)")
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    rgba = np.empty(len(mesh.vertices) * 4, np.float32)
    attribute.data.foreach_get("color", rgba)
    engine.load()
    from softras.colorspace import linear_to_srgb

    return z_up_to_y_up(co.reshape(-1, 3)), faces.reshape(-1, 3).astype(np.int64), linear_to_srgb(rgba.reshape(-1, 4)[:, :3]).astype(np.float32)


def set_world_vertices(obj: bpy.types.Object, world: np.ndarray, matrix: np.ndarray) -> None:
    """Write world-frame vertex positions (V, 3) back into ``obj``'s mesh, in object space through the inverse of
    ``matrix`` (the matrix_world they were read with)."""
    mesh = obj.data
    if world.shape != (len(mesh.vertices), 3):
        raise ValueError(f"'{obj.name}' now has {len(mesh.vertices)} vertices, the fit has {len(world)}")
    inverse = np.linalg.inv(matrix)
    local = world @ inverse[:3, :3].T + inverse[:3, 3]
    mesh.vertices.foreach_set("co", local.astype(np.float32).ravel())
    mesh.update()
