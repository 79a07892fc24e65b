"""Small, fast Cycles renders of per-face coloured triangle meshes in the project camera convention (bpy glue).

Frames
------
* **Object frame** (what the engine, the data set and this module's *inputs* use): Y-up, as stored in
  ``shapes_train.npz``. A camera at distance ``d``, elevation ``e`` and azimuth ``a`` (degrees) sits at
  ``eye = d (cos e sin a, sin e, -cos e cos a)``, looks at the origin, up +Y, full vertical FOV 30 deg.
* **Blender world frame**: Z-up. A stored point ``(x, y, z)`` is placed at ``(x, -z, y)``
  (:func:`y_up_to_z_up`, a proper rotation of +90 deg about X, so images are identical). The camera sits at
  the mapped eye, looks at the origin with its up towards Blender +Z, ``sensor_fit='VERTICAL'`` and
  ``angle_y = radians(30)``.

Images come back as ``uint8`` RGBA arrays, row 0 = top row of the picture (the PNG convention, identical to
``softras.Camera.to_pixels``: pixel ``(row i, column j)`` has its centre at ``(column, row) = (j + 0.5, i + 0.5)``).
Colours are 8-bit sRGB through the ``Standard`` view transform, alpha is straight (not premultiplied) and
0 where no geometry is hit (``film_transparent``).

Light set-up (see :func:`prepare_scene`): a uniform white world of strength 0.7 plus one sun of strength 1.0
shining from above-front-left of the azimuth-0 camera (Blender direction towards the sun ``(1, 1, 2)``,
i.e. stored-frame ``(+x, +y, -z)`` side). With a Diffuse BSDF a fully exposed, sun-facing surface comes out at
about ``albedo * 1.0``; faces turned away from the sun at about ``albedo * 0.7`` (less in crevices), which keeps
the lit colour close to the albedo while still giving shading cues.

Typical use (headless, ``import bpy`` as a module)::

    scene = prepare_scene(size=64, samples=32)
    images = render_views(vertices, faces, face_colors, elevations=[30] * 24,
                          azimuths=np.arange(0, 360, 15), size=64, scene=scene)   # (24, 64, 64, 4) uint8

Of the engine this module uses only the numpy colour conversion (:mod:`softras.colorspace`, imported when a mesh
is added, through :func:`softras_blender.engine.load`, so that the installed extension uses its own copy); the
camera constants are duplicated from ``softras.camera``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
from typing import Iterator, Sequence

import bpy
import numpy as np
from mathutils import Matrix
from PIL import Image

from . import engine
from .convert import y_up_to_z_up

__all__ = [
    "DEFAULT_DISTANCE",
    "DEFAULT_FOV",
    "DEFAULT_SAMPLES",
    "COLOR_ATTRIBUTE",
    "eye_position",
    "prepare_scene",
    "validate_mesh_arrays",
    "add_colored_mesh",
    "remove_object",
    "set_camera",
    "render_still",
    "render_views",
]

DEFAULT_DISTANCE = 2.732  # = softras.camera.DEFAULT_DISTANCE
DEFAULT_FOV = 30.0  # full vertical field of view, degrees (= softras.camera.DEFAULT_FOV)
DEFAULT_SAMPLES = 32

COLOR_ATTRIBUTE = "softras_face_color"  # FLOAT_COLOR attribute on the FACE domain, linear RGBA
MATERIAL_NAME = "softras_face_color"
WORLD_NAME = "softras_world"
CAMERA_NAME = "softras_camera"
SUN_NAME = "softras_sun"
SUN_TOWARDS = (1.0, 1.0, 2.0)  # Blender world direction pointing *towards* the sun (above-front-left of azimuth 0)


# ----------------------------------------------------------------------------------------------- conversions
def eye_position(distance: float, elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Camera eye (3,) float64 in the **Y-up object frame**: ``d (cos e sin a, sin e, -cos e cos a)``."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return distance * np.array([math.cos(e) * math.sin(a), math.sin(e), -math.cos(e) * math.cos(a)])


# ----------------------------------------------------------------------------------------------- scene
def _remove_unused(collection: bpy.types.bpy_prop_collection) -> None:
    for block in list(collection):
        if block.users == 0:
            collection.remove(block)


def prepare_scene(
    size: int = 64,
    samples: int = DEFAULT_SAMPLES,
    *,
    scene: bpy.types.Scene | None = None,
    clear: bool = True,
    world_strength: float = 0.7,
    sun_strength: float = 1.0,
    sun_towards: Sequence[float] = SUN_TOWARDS,
    adaptive_threshold: float = 0.01,
    denoise: bool = False,
    threads: int = 0,
) -> bpy.types.Scene:
    """Reset ``scene`` for small, fast Cycles CPU renders with the project's plain light set-up.

    Args:
        size: square output resolution in pixels (resolution_x = resolution_y = size, 100 %).
        samples: maximum Cycles samples per pixel (adaptive sampling is on, ``adaptive_threshold``).
        scene: the scene to set up; default ``bpy.context.scene``. With ``clear`` **every object linked to it is
            deleted** (the factory cube/light/camera in a headless session), so an add-on should pass a
            dedicated scene (``bpy.data.scenes.new(...)``) instead of the user's one.
        clear: delete the scene's objects first and purge meshes/lights/cameras/materials left without users.
        world_strength: strength of the uniform white world background (lighting only; film is transparent).
        sun_strength: sun irradiance (W/m^2, Blender units).
        sun_towards: Blender-world (Z-up) vector pointing from the scene towards the sun.
        adaptive_threshold: Cycles adaptive-sampling noise threshold.
        denoise: enable the OpenImageDenoise denoiser (off by default: at 64 x 64 it does not pay off).
        threads: render threads, 0 = automatic (all cores).
    Returns:
        The prepared scene (world ``softras_world``, sun ``softras_sun``; the camera is added by
        :func:`set_camera`). Output: 8-bit RGBA PNG, ``Standard`` view transform, transparent film.
    """
    scene = bpy.context.scene if scene is None else scene
    if clear:
        for obj in list(scene.objects):
            bpy.data.objects.remove(obj, do_unlink=True)
        for coll in (bpy.data.meshes, bpy.data.lights, bpy.data.cameras, bpy.data.materials):
            _remove_unused(coll)

    # --- render engine and sampling
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = int(samples)
    cyc.use_adaptive_sampling = True
    cyc.adaptive_threshold = float(adaptive_threshold)
    cyc.adaptive_min_samples = 0
    cyc.use_denoising = bool(denoise)
    cyc.seed = 0
    cyc.use_animated_seed = False
    # light paths: diffuse-only scenes need few bounces; fewer bounces = faster and colours closer to the albedo
    cyc.max_bounces = 3
    cyc.diffuse_bounces = 2
    cyc.glossy_bounces = 1
    cyc.transmission_bounces = 0
    cyc.volume_bounces = 0
    cyc.transparent_max_bounces = 4
    cyc.caustics_reflective = False
    cyc.caustics_refractive = False
    cyc.pixel_filter_type = "BLACKMAN_HARRIS"
    cyc.filter_width = 1.5

    # --- film and output
    r = scene.render
    r.resolution_x = r.resolution_y = int(size)
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.use_border = False
    r.film_transparent = True
    r.use_persistent_data = True  # keep the BVH between the views of one model
    r.use_compositing = False
    r.use_sequencer = False
    r.threads_mode = "AUTO" if threads <= 0 else "FIXED"
    if threads > 0:
        r.threads = int(threads)
    img = r.image_settings
    img.file_format = "PNG"
    img.color_mode = "RGBA"
    img.color_depth = "8"
    img.compression = 0  # temp files only: fastest write
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.view_settings.use_curve_mapping = False

    # --- world: uniform white
    world = bpy.data.worlds.get(WORLD_NAME) or bpy.data.worlds.new(WORLD_NAME)
    world.use_nodes = True
    nt = world.node_tree
    nt.nodes.clear()
    bg = nt.nodes.new("ShaderNodeBackground")
    bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bg.inputs["Strength"].default_value = float(world_strength)
    out = nt.nodes.new("ShaderNodeOutputWorld")
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    scene.world = world

    # --- one sun from above-front-left
    sun = bpy.data.objects.get(SUN_NAME)
    if sun is None or sun.type != "LIGHT":
        light = bpy.data.lights.new(SUN_NAME, type="SUN")
        sun = bpy.data.objects.new(SUN_NAME, light)
    if sun.name not in scene.collection.objects:
        scene.collection.objects.link(sun)
    sun.data.energy = float(sun_strength)
    sun.data.angle = math.radians(3.0)
    sun.data.color = (1.0, 1.0, 1.0)
    towards = np.asarray(sun_towards, dtype=np.float64)
    towards = towards / np.linalg.norm(towards)
    # a sun shines along its local -Z: point local +Z towards the sun
    sun.matrix_world = _look_matrix(position=towards * 5.0, forward=-towards)
    return scene


def _material() -> bpy.types.Material:
    """The shared material: Diffuse BSDF whose colour is read from the ``COLOR_ATTRIBUTE`` face attribute."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL_NAME)
    mat.use_nodes = True
    mat.use_backface_culling = False  # double-sided (Cycles shades both sides regardless)
    if hasattr(mat, "use_backface_culling_shadow"):
        mat.use_backface_culling_shadow = False
    nt = mat.node_tree
    nt.nodes.clear()
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = COLOR_ATTRIBUTE
    bsdf = nt.nodes.new("ShaderNodeBsdfDiffuse")
    bsdf.inputs["Roughness"].default_value = 0.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    out.target = "ALL"
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def validate_mesh_arrays(vertices: np.ndarray, faces: np.ndarray, face_colors: np.ndarray) -> None:
    """Raise ``ValueError`` unless vertices (V,3) finite, faces (F>=1,3) in [0,V) and face_colors (F,3|4)."""
    v, f, c = np.asarray(vertices), np.asarray(faces), np.asarray(face_colors)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must have shape (V>=1, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices must be finite")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"faces must have shape (F>=1, 3), got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"faces reference vertices outside [0, {len(v)}): min {f.min()}, max {f.max()}")
    if c.ndim != 2 or c.shape[0] != f.shape[0] or c.shape[1] not in (3, 4):
        raise ValueError(f"face_colors must have shape ({len(f)}, 3) or ({len(f)}, 4), got {c.shape}")


def add_colored_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_colors: np.ndarray,
    *,
    scene: bpy.types.Scene | None = None,
    name: str = "softras_model",
) -> bpy.types.Object:
    """Add a flat-shaded triangle mesh with per-face colours to ``scene``.

    Args:
        vertices: (V, 3) float, **Y-up object frame** (converted with :func:`y_up_to_z_up`).
        faces: (F, 3) int, indices into ``vertices``; F >= 1, all in range.
        face_colors: (F, 3) or (F, 4) per-face colours, **sRGB**: uint8 in [0, 255] or floats in [0, 1].
            Stored linearised (exact sRGB -> linear) in the FACE-domain FLOAT_COLOR attribute
            ``COLOR_ATTRIBUTE``; alpha (if given) is kept as is but not used by the material.
        scene: target scene (default ``bpy.context.scene``).
        name: name of the new object and its mesh.
    Returns:
        The new object (identity transform), using the shared Diffuse material that reads the attribute.
    """
    engine.load()
    from softras.colorspace import srgb_to_linear

    scene = bpy.context.scene if scene is None else scene
    validate_mesh_arrays(vertices, faces, face_colors)
    v = y_up_to_z_up(np.asarray(vertices, dtype=np.float64)).astype(np.float32)
    f = np.ascontiguousarray(faces, dtype=np.int32)
    c = np.asarray(face_colors)
    rgba = np.ones((len(f), 4), dtype=np.float32)
    rgba[:, :3] = srgb_to_linear(c[:, :3] / 255.0 if c.dtype == np.uint8 else c[:, :3])
    if c.shape[1] == 4:
        rgba[:, 3] = c[:, 3] / 255.0 if c.dtype == np.uint8 else c[:, 3]

    n_faces = len(f)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(v))
    mesh.vertices.foreach_set("co", v.ravel())
    mesh.loops.add(3 * n_faces)
    mesh.loops.foreach_set("vertex_index", f.ravel())
    mesh.polygons.add(n_faces)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))
    attr = mesh.attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "FACE")
    attr.data.foreach_set("color", rgba.ravel())
    mesh.update(calc_edges=True)
    if hasattr(mesh, "shade_flat"):
        mesh.shade_flat()
    else:  # Blender < 4.1
        mesh.polygons.foreach_set("use_smooth", np.zeros(n_faces, dtype=bool))
    mesh.materials.append(_material())

    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def remove_object(obj: bpy.types.Object) -> None:
    """Delete ``obj`` and, if nothing else uses it, its mesh data."""
    data = obj.data
    bpy.data.objects.remove(obj, do_unlink=True)
    if isinstance(data, bpy.types.Mesh) and data.users == 0:
        bpy.data.meshes.remove(data)


def _look_matrix(position: np.ndarray, forward: np.ndarray, up: Sequence[float] = (0.0, 0.0, 1.0)) -> Matrix:
    """4x4 world matrix of a Blender camera/light at ``position`` looking along ``forward`` (its local -Z),
    local +Y towards ``up`` (Blender Z-up world)."""
    fwd = np.asarray(forward, dtype=np.float64)
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight up/down: any right vector will do
        right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, -fwd, position
    return Matrix(m.tolist())


def set_camera(
    scene: bpy.types.Scene,
    distance: float,
    elevation_deg: float,
    azimuth_deg: float,
    fov_deg: float = DEFAULT_FOV,
) -> bpy.types.Object:
    """Place the scene camera (created on first use, named ``softras_camera``) in the project convention.

    The eye is :func:`eye_position` (Y-up) mapped with :func:`y_up_to_z_up`; the camera looks at the origin
    with up towards Blender +Z (an explicit rotation, equivalent to a TRACK_TO constraint with up axis Y),
    ``sensor_fit='VERTICAL'``, ``angle_y = radians(fov_deg)``. Elevations of +-90 deg are rejected (up would be
    parallel to the view direction). Sets ``scene.camera`` and returns the camera object.
    """
    if abs(math.cos(math.radians(elevation_deg))) < 1e-6:
        raise ValueError("elevation must not be +-90 degrees (camera up would be parallel to the view direction)")
    cam = bpy.data.objects.get(CAMERA_NAME)
    if cam is None or cam.type != "CAMERA":
        cam = bpy.data.objects.new(CAMERA_NAME, bpy.data.cameras.new(CAMERA_NAME))
    if cam.name not in scene.collection.objects:
        scene.collection.objects.link(cam)
    cd = cam.data
    cd.type = "PERSP"
    cd.sensor_fit = "VERTICAL"
    cd.angle_y = math.radians(fov_deg)
    cd.shift_x = cd.shift_y = 0.0
    cd.clip_start = 0.01
    cd.clip_end = 100.0
    eye = y_up_to_z_up(eye_position(distance, elevation_deg, azimuth_deg))
    cam.matrix_world = _look_matrix(position=eye, forward=-eye)
    scene.camera = cam
    return cam


# ----------------------------------------------------------------------------------------------- rendering
def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover - platform without a C runtime we can reach
        pass


@contextlib.contextmanager
def _silence_stdout(enabled: bool = True) -> Iterator[None]:
    """Redirect the process-level stdout (fd 1) to /dev/null: Cycles prints a status line per render."""
    if not enabled:
        yield
        return
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 1
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        _flush_c_stdio()  # C/C++ stdout is block-buffered when not a terminal: flush into /dev/null first
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def render_still(scene: bpy.types.Scene, path: str, quiet: bool = True) -> np.ndarray:
    """Render ``scene`` once with its camera to the PNG ``path`` and read it back.

    Returns:
        (H, W, 4) uint8 RGBA, row 0 = top of the image.
    """
    scene.render.filepath = path
    with _silence_stdout(quiet):
        result = bpy.ops.render.render(write_still=True, scene=scene.name)
    if "FINISHED" not in result or not os.path.exists(path):
        raise RuntimeError(f"Cycles render failed: {result}")
    with Image.open(path) as im:
        return np.array(im.convert("RGBA"), dtype=np.uint8)


def render_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_colors: np.ndarray,
    elevations: Sequence[float] | np.ndarray,
    azimuths: Sequence[float] | np.ndarray,
    size: int = 64,
    *,
    distance: float = DEFAULT_DISTANCE,
    fov: float = DEFAULT_FOV,
    samples: int | None = None,
    scene: bpy.types.Scene | None = None,
    quiet: bool = True,
) -> np.ndarray:
    """Render one mesh from V viewpoints with Cycles.

    Args:
        vertices: (V_m, 3) float, Y-up object frame (see module docstring).
        faces: (F, 3) int, in-range indices.
        face_colors: (F, 3) uint8 sRGB (or floats in [0, 1]).
        elevations, azimuths: degrees, 1-D arrays of the same length V (a scalar broadcasts); view k uses
            ``(elevations[k], azimuths[k])``.
        size: square image size in pixels.
        distance, fov: camera distance (object units) and full vertical field of view (degrees).
        samples: Cycles samples; None keeps the scene's setting (``DEFAULT_SAMPLES`` for a fresh scene).
        scene: a scene prepared with :func:`prepare_scene` to reuse (its resolution is set to ``size``);
            None prepares (and clears!) ``bpy.context.scene``.
        quiet: silence Cycles' per-render status output on stdout.
    Returns:
        (V, size, size, 4) uint8 RGBA images, straight alpha, row 0 = top.
    """
    el, az = np.broadcast_arrays(np.atleast_1d(np.asarray(elevations, dtype=np.float64)),
                                 np.atleast_1d(np.asarray(azimuths, dtype=np.float64)))
    if el.ndim != 1:
        raise ValueError("elevations and azimuths must be scalars or 1-D arrays")
    if scene is None:
        scene = prepare_scene(size=size, samples=DEFAULT_SAMPLES if samples is None else samples)
    else:
        scene.render.resolution_x = scene.render.resolution_y = int(size)
        if samples is not None:
            scene.cycles.samples = int(samples)

    out = np.zeros((len(el), size, size, 4), dtype=np.uint8)
    obj = add_colored_mesh(vertices, faces, face_colors, scene=scene)
    tmpdir = tempfile.mkdtemp(prefix="softras_render_")
    try:
        path = os.path.join(tmpdir, "view.png")
        for k, (e, a) in enumerate(zip(el, az)):
            set_camera(scene, distance, float(e), float(a), fov)
            img = render_still(scene, path, quiet=quiet)
            if img.shape != (size, size, 4):
                raise RuntimeError(f"unexpected render shape {img.shape}")
            out[k] = img
    finally:
        remove_object(obj)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out
