"""Spawn Infinigen assets and write each as a raw triangle mesh with per-face colours (runs in the Infinigen venv).

This file runs under the Python of ``.venv-infinigen`` (``bpy==4.2.0`` and ``infinigen``), never under the project's
venv: it imports neither torch nor :mod:`softras`. :mod:`datagen.infinigen_shapes` starts it and turns its output
into a shape pack::

    .venv-infinigen/bin/python datagen/infinigen_worker.py --raw cache/infinigen/raw --jobs ChairFactory:0 BedFactory:3

For every job ``FACTORY:SEED`` it writes ``<raw>/<FACTORY>_<SEED>.npz`` (atomically; an existing file is skipped, so
an interrupted worker resumes) with

* ``vertices`` float32 (V, 3): Blender's world frame as Infinigen builds assets (Z up, the front along +X, metres,
  origin wherever the factory put it);
* ``faces`` int32 (F, 3): triangles, at most ``--max-faces`` (Blender's collapse decimation above that);
* ``face_colors`` uint8 (F, 3): sRGB, the mean of the face's corners baked from the asset's own shaders (Cycles,
  diffuse colour; a metal's glossy colour where its diffuse colour is black);
* ``face_has_color`` bool (F,): False where no shader gave the face a colour (it then holds ``DEFAULT_COLOR``);
* ``seconds`` float64 (4,): spawn, mesh clean-up and decimation, colour bake, total (this process's CPU time, so
  that it measures the work whatever else the machine is doing).

and prints one JSON line per job (``job``, ``status`` ``ok|skipped|failed``, ``faces``, ``seconds``, ``error``).

Every job starts from an empty scene with its seed fixed, so a job's arrays do not depend on which jobs ran before it
in the same process (the shard or worker count).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

DEFAULT_COLOR = (180, 180, 180)  # sRGB grey where no shader gives a colour, as in the shared shapes file


def _factories() -> dict[str, type]:
    """Factory name -> class, for the asset kinds the shape packs use."""
    from infinigen.assets.objects import bathroom, lamp, seating, shelves, table_decorations, tables, tableware

    classes = [
        seating.ChairFactory, seating.OfficeChairFactory, seating.ArmChairFactory,
        seating.SofaFactory, seating.BedFrameFactory, seating.BedFactory,
        tables.TableDiningFactory, tables.CoffeeTableFactory, tables.SideTableFactory, tables.TableCocktailFactory,
        shelves.SimpleDeskFactory, shelves.SimpleBookcaseFactory, shelves.LargeShelfFactory, shelves.CellShelfFactory,
        shelves.SingleCabinetFactory,
        bathroom.BathtubFactory, bathroom.ToiletFactory, bathroom.StandingSinkFactory,
        lamp.FloorLampFactory, lamp.DeskLampFactory,
        tableware.CupFactory, tableware.BottleFactory, table_decorations.VaseFactory,
    ]
    out = {c.__name__: c for c in classes}
    out["BedFactory"] = _bed_without_cloth(seating.BedFactory)
    return out


def _bed_without_cloth(bed_factory: type) -> type:
    """Infinigen's bed (frame, mattress, pillows) built without any cloth simulation.

    The original drapes a sheet and a cover over the mattress, inflates a "wrapped" mattress and every pillow with
    pressure simulations: minutes per bed. Here the frame is built as it builds it; the mattress is always of
    Infinigen's "coiled" kind (no simulation); each pillow is Infinigen's pillow with its pressure simulation
    replaced by a closed-form bulge (:func:`_inflate`), then dropped onto the mattress near the head end as the
    original drops it. No sheet, cover or towel: a bed in a few seconds.
    """
    import bpy
    from infinigen.assets.scatters import clothes
    from numpy.random import uniform

    class BedWithoutClothFactory(bed_factory):
        def create_asset(self, i, **params) -> bpy.types.Object:
            frame = bed_factory.__mro__[1].create_asset(self, i=i, **params)  # the bed frame's own geometry
            self.mattress_factory.type = "coiled"
            mattress = self.make_mattress(i)
            count = int(np.random.randint(2, 4))
            simulate, clothes.cloth_sim = clothes.cloth_sim, lambda *args, **kwargs: None
            try:
                pillow = self.pillow_factory(i)
            finally:
                clothes.cloth_sim = simulate
            _inflate(pillow, uniform(0.05, 0.09))
            pillows = [pillow] + [_clone(pillow) for _ in range(count - 1)]
            self.pillow_factory.finalize_assets(pillows)
            points = np.stack([uniform(0.1, 0.4, 10) * self.size, uniform(-0.3, 0.3, 10) * self.width,
                               np.full(10, 1.0)], -1)
            self.scatter(pillows, points, [mattress])
            for part in [mattress, *pillows]:
                part.parent = frame
            return frame

    BedWithoutClothFactory.__name__ = "BedFactory"
    return BedWithoutClothFactory


def _inflate(obj, height: float) -> None:
    """Bulge a flat pillow (a thin two-sided sheet, z its thickness) into a cushion: each side moves away from the
    middle by ``height / 2 * (1 - r^4)``, r the vertex's distance from the centre relative to the pillow's outline
    (1 on the rim)."""
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float64)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    centre = (co.max(0) + co.min(0)) / 2
    half = np.maximum((co.max(0) - co.min(0)) / 2, 1e-9)
    r = np.clip(np.hypot((co[:, 0] - centre[0]) / half[0], (co[:, 1] - centre[1]) / half[1]), 0.0, 1.0)
    side = np.sign(co[:, 2] - centre[2])
    co[:, 2] += side * height / 2 * (1 - r ** 4)
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.update()


def _clone(obj):
    """A deep copy of a mesh object (its own mesh data), linked to the scene."""
    import bpy

    copy = obj.copy()
    copy.data = obj.data.copy()
    bpy.context.scene.collection.objects.link(copy)
    return copy


def _reset_scene() -> None:
    """An empty scene: no objects, meshes, materials, node groups, images or worlds from an earlier job."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.node_groups, bpy.data.images,
                       bpy.data.curves, bpy.data.textures):
        for block in list(collection):
            collection.remove(block)


def _mesh_objects(root) -> list:
    """The mesh objects of an asset: the root and its children, recursively (curves and text converted)."""
    out, stack = [], [root]
    while stack:
        obj = stack.pop()
        stack.extend(obj.children)
        if obj.type in ("MESH", "CURVE", "SURFACE", "META", "FONT"):
            out.append(obj)
    return out


def _triangles(obj, depsgraph) -> tuple[np.ndarray, np.ndarray, np.ndarray, list] | None:
    """One part as world-space triangles: vertices (V, 3) float64, triangles (T, 3) int64, material slot per
    triangle (T,) int64, and its materials; None without geometry. Modifiers applied, curves turned into meshes."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        if mesh is None or len(mesh.vertices) == 0:
            return None
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(obj.matrix_world, np.float64)
        co = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        slots = np.empty(len(mesh.loop_triangles), np.int64)
        mesh.loop_triangles.foreach_get("material_index", slots)
        slots_of = mesh.materials if len(mesh.materials) else [s.material for s in evaluated.material_slots]
        materials = [None if m is None else m.original for m in slots_of]  # the datablocks, not evaluated copies
        return co, tris.reshape(-1, 3), slots, materials
    finally:
        evaluated.to_mesh_clear()


def _single_mesh(root):
    """The asset's parts as one triangle mesh object (modifiers and transforms applied), its vertices and triangles
    in an order fixed by the geometry, not by the parts' names or the order Blender lists them in, so that the same
    asset gives the same arrays after any earlier job; coincident vertices merged. Every other object is removed."""
    import bmesh
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    pieces = [p for p in (_triangles(obj, depsgraph) for obj in _mesh_objects(root)) if p is not None]
    if not pieces:
        raise ValueError("the asset has no mesh geometry")
    pieces.sort(key=lambda p: (len(p[1]), len(p[0]), *np.round(p[0].mean(0), 6), *np.round(p[0].min(0), 6)))
    materials, vertices, triangles, slots, offset = [], [], [], [], 0
    for co, tris, slot, mats in pieces:
        index = []
        for m in mats or [None]:
            if m not in materials:
                materials.append(m)
            index.append(materials.index(m))
        vertices.append(co)
        triangles.append(tris + offset)
        slots.append(np.asarray(index)[np.clip(slot, 0, len(index) - 1)])
        offset += len(co)
    vertices, triangles, slots = np.concatenate(vertices), np.concatenate(triangles), np.concatenate(slots)
    # Blender may list a part's vertices and triangles in another order from one run to the next: put them in a
    # canonical one (vertices sorted by position; each triangle starting at its lowest vertex, winding kept, then
    # sorted by its vertices and material)
    order = np.lexsort((vertices[:, 2], vertices[:, 1], vertices[:, 0]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    vertices, triangles = vertices[order], rank[triangles]
    first = triangles.argmin(1)
    triangles = np.take_along_axis(triangles, (first[:, None] + np.arange(3)) % 3, axis=1)
    order = np.lexsort((slots, triangles[:, 2], triangles[:, 1], triangles[:, 0]))
    triangles, slots = triangles[order], slots[order]
    for obj in list(bpy.context.scene.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    mesh = bpy.data.meshes.new("asset")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(3 * len(triangles))
    mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32).ravel())
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(triangles), 3, dtype=np.int32))
    mesh.polygons.foreach_set("material_index", slots.astype(np.int32))
    mesh.update(calc_edges=True)
    for m in materials:
        mesh.materials.append(m)
    bm = bmesh.new()
    bm.from_mesh(mesh)
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-6)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new("asset", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _decimate(obj, max_faces: int) -> None:
    """Collapse-decimate until the triangle mesh has at most ``max_faces`` (degenerate triangles are left for the
    pack's conversion to drop)."""
    import bpy

    bpy.context.view_layer.objects.active = obj
    for attempt in range(6):  # collapse stops short of the ratio on some meshes: aim lower each time
        count = len(obj.data.polygons)
        if count <= max_faces:
            return
        mod = obj.modifiers.new("decimate", "DECIMATE")
        mod.decimate_type = "COLLAPSE"
        mod.ratio = max_faces / count * (0.98 - 0.1 * attempt)
        mod.use_collapse_triangulate = True
        bpy.ops.object.modifier_apply(modifier=mod.name)
    if len(obj.data.polygons) > max_faces:
        raise ValueError(f"decimation left {len(obj.data.polygons)} faces (> {max_faces})")


def _bake(obj, kind: str) -> np.ndarray:
    """Cycles bake of the ``kind`` ("DIFFUSE" or "GLOSSY") colour pass into a corner colour: (L, 3) linear floats."""
    import bpy

    mesh = obj.data
    name = f"bake_{kind.lower()}"
    attr = mesh.color_attributes.new(name, "FLOAT_COLOR", "CORNER")
    mesh.color_attributes.active_color = attr
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.render.bake.target = "VERTEX_COLORS"
    scene.render.bake.use_pass_direct = False
    scene.render.bake.use_pass_indirect = False
    scene.render.bake.use_pass_color = True
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    with _quiet():
        bpy.ops.object.bake(type=kind, pass_filter={"COLOR"}, target="VERTEX_COLORS")
    values = np.empty(len(mesh.loops) * 4, np.float32)
    attr.data.foreach_get("color", values)
    mesh.color_attributes.remove(mesh.color_attributes[name])
    return values.reshape(-1, 4)[:, :3]


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _face_colors(obj) -> tuple[np.ndarray, np.ndarray]:
    """Per-face sRGB colours (F, 3) uint8 from the asset's shaders, and (F,) bool: which faces got one."""
    mesh = obj.data
    faces = len(mesh.polygons)
    if not mesh.materials or all(m is None for m in mesh.materials):
        return np.tile(np.array(DEFAULT_COLOR, np.uint8), (faces, 1)), np.zeros(faces, bool)
    diffuse = _bake(obj, "DIFFUSE").reshape(faces, 3, 3).mean(1)  # triangles: 3 corners each, in order
    glossy = _bake(obj, "GLOSSY").reshape(faces, 3, 3).mean(1)
    metal = (diffuse.max(1) < 0.02) & (glossy.max(1) >= 0.02)
    linear = np.where(metal[:, None], glossy, diffuse)
    has = linear.max(1) >= 0.02
    srgb = np.rint(_linear_to_srgb(linear) * 255).astype(np.uint8)
    srgb[~has] = DEFAULT_COLOR
    return srgb, has


def _arrays(obj) -> tuple[np.ndarray, np.ndarray]:
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    return vertices.reshape(-1, 3), faces.reshape(-1, 3)


@contextlib.contextmanager
def _quiet():
    """Silence C-level stdout (Blender and Cycles print per operation) so that stdout carries only JSON lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def make_asset(factories: dict[str, type], name: str, seed: int, max_faces: int) -> dict[str, np.ndarray]:
    """One asset as raw arrays (see the module docstring), from an empty scene."""
    from infinigen.core.util.math import FixedSeed

    _reset_scene()
    start = time.process_time()
    with _quiet(), FixedSeed(seed):
        factory = factories[name](seed)
        asset = factory.spawn_asset(0)
        factory.finalize_assets(asset)
    spawned = time.process_time()
    with _quiet():
        obj = _single_mesh(asset)
        _decimate(obj, max_faces)
    cleaned = time.process_time()
    if len(obj.data.polygons) == 0:
        raise ValueError("the asset has no faces")
    with FixedSeed(seed):
        colors, has_color = _face_colors(obj)
    vertices, faces = _arrays(obj)
    done = time.process_time()
    return {"vertices": vertices, "faces": faces, "face_colors": colors, "face_has_color": has_color,
            "seconds": np.array([spawned - start, cleaned - spawned, done - cleaned, done - start])}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _setup() -> None:
    """Import Infinigen offline and load its indoor configuration (its include paths are relative to its repository
    root).

    Some of Infinigen's modules ask for optional Blender add-ons when imported (rocks, fluids, snow: none of the
    factories used here) and try to download them from Blender's extension site; the request is answered "not
    available" here instead, so nothing is fetched.
    """
    import infinigen
    import infinigen.core.init
    from infinigen.core.util.test_utils import setup_gin

    infinigen.core.init.require_blender_addon = lambda addon, fail="fatal", allow_online=False: False

    here = os.getcwd()
    os.chdir(infinigen.repo_root())
    try:
        with _quiet():
            setup_gin(["infinigen_examples/configs_indoor", "infinigen_examples/configs_nature"],
                      configs=["base_indoors.gin"])
    finally:
        os.chdir(here)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="folder of the per-asset .npz files")
    parser.add_argument("--jobs", nargs="+", required=True, help="FACTORY:SEED ...")
    parser.add_argument("--max-faces", type=int, default=8000)
    args = parser.parse_args(argv)
    args.raw.mkdir(parents=True, exist_ok=True)
    with _quiet():
        _setup()
        factories = _factories()
    for job in args.jobs:
        name, _, seed = job.partition(":")
        path = args.raw / f"{name}_{seed}.npz"
        record = {"job": job, "status": "skipped", "faces": None, "seconds": None, "error": None}
        if not path.exists():
            try:
                if name not in factories:
                    raise ValueError(f"unknown factory {name!r}; known: {', '.join(sorted(factories))}")
                arrays = make_asset(factories, name, int(seed), args.max_faces)
                _save(path, arrays)
                record.update(status="ok", faces=int(len(arrays["faces"])), seconds=float(arrays["seconds"][-1]))
            except Exception as exc:  # one broken asset must not stop the shard; it is reported and counted
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                              trace=traceback.format_exc(limit=3))
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
