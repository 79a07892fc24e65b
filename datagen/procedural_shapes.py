"""Procedural shapes (furniture, vessels, props) saved as a shapes file (the layout of ``shared/data/shapes_train.npz``).

    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_shapes.npz --count 400
    .venv/bin/python -m datagen.training_views --data cache/procedural_shapes.npz \\
        --out cache/views_procedural_e0_30.npz --elevations 0 30 --val-fraction 0
    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_vessels.npz --count 200 --kinds vessel --seed 1
    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_props.npz --count 200 --kinds rifle tool --seed 2
    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_stools.npz --count 320 \\
        --kinds stool round_table frame_table pan --seed 3
    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_aeroplanes.npz --count 150 --kinds aeroplane --seed 4
    .venv/bin/python -m datagen.procedural_shapes --out cache/procedural_rooms.npz --count 240 \\
        --kinds sofa bathtub toilet piano --seed 5

Tables, chairs, benches, beds, desks and shelves with random proportions, thin legs, slats and open frames: the
shapes the real data has few of and a deformed sphere finds hardest (space under table tops and seats); and, with
``--kinds vessel``, vases, bottles and jars turned from random profiles, and with ``--kinds rifle tool``, rifles
along z and hand tools standing along y as in the real data (which has 8 rifles and 7 tools); with
``--kinds stool round_table frame_table pan``, stools and round tables on splayed legs, rectangular tables with an
apron and a lower shelf, and pans and pots lying flat (hollow turned bodies with handles); with ``--kinds aeroplane``,
aircraft with the nose at -z and the fin at +z like the real data's five; with ``--kinds sofa bathtub toilet piano``,
sofas with the back at +z, open bathtubs along x, toilets with the cistern at +z and upright and grand pianos with
the keyboard at -z, as the real data's 8 to 16 models of each stand. Object
frame as in the data README: Y-up, bounding box centred and scaled to a largest extent of 1; chair, bench and
bed backs on the +z side like the Pix3D and ShapeNet models. Every part is closed, so ``voxels`` (winding
number) and ``voxels_shell`` (plus surface) follow the README's definitions.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from softras.fileio import atomic_write
from softras.voxelize import shapes_file_voxels

_BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int64)
_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float64)
_WOODS = np.array([[140, 90, 50], [190, 140, 90], [100, 60, 35], [220, 190, 150], [60, 40, 30]], np.float64)


class _Parts:
    """Closed parts (boxes, solids of revolution) with one colour each, collected into one mesh."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.parts, self.colors = rng, [], []

    def box(self, lo: tuple[float, float, float], hi: tuple[float, float, float], color: np.ndarray) -> None:
        lo_, hi_ = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self._add((lo_ + hi_) / 2 + _CORNERS * (hi_ - lo_), _BOX_FACES, color)

    def beam(self, a: tuple[float, float, float], b: tuple[float, float, float], width: float, color: np.ndarray,
             depth: float | None = None) -> None:
        """A box from point ``a`` to point ``b`` with a ``width`` x ``depth`` (default: square) cross-section."""
        a_, b_ = np.asarray(a, np.float64), np.asarray(b, np.float64)
        axis = (b_ - a_) / np.linalg.norm(b_ - a_)
        helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(helper, axis)
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        c = _CORNERS + 0.5 * np.array([0, 0, 1.0])
        corners = a_ + c[:, :1] * width * u + c[:, 1:2] * (depth or width) * v + c[:, 2:] * (b_ - a_)
        self._add(corners, _BOX_FACES, color)

    def lathe(self, radii: np.ndarray, heights: np.ndarray, color: np.ndarray, segments: int = 24,
              offset: tuple[float, float, float] = (0.0, 0.0, 0.0), along_z: bool = False,
              scale: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        """The profile ``radii`` (K,) at increasing ``heights`` (K,) turned about the y axis (the z axis when
        ``along_z``, heights then along z), capped at both ends, then stretched by ``scale`` (positive) and moved
        by ``offset``."""
        k = len(radii)
        angle = np.arange(segments) * 2 * np.pi / segments
        rings = np.stack([np.outer(radii, np.cos(angle)), np.repeat(heights[:, None], segments, 1),
                          np.outer(radii, np.sin(angle))], -1).reshape(-1, 3)
        vertices = np.concatenate([rings, [[0, heights[0], 0], [0, heights[-1], 0]]])
        j, i = np.meshgrid(np.arange(segments), np.arange(k - 1))
        a, b = i * segments + j, i * segments + (j + 1) % segments
        side = np.concatenate([np.stack([a, a + segments, b], -1).reshape(-1, 3), np.stack([b, a + segments, b + segments], -1).reshape(-1, 3)])
        ring = np.arange(segments)
        bottom = np.stack([np.full(segments, k * segments), ring, (ring + 1) % segments], -1)
        top = np.stack([np.full(segments, k * segments + 1), (k - 1) * segments + (ring + 1) % segments, (k - 1) * segments + ring], -1)
        if along_z:
            vertices = vertices[:, [0, 2, 1]]
        self._add(vertices * np.asarray(scale) + np.asarray(offset), np.concatenate([side, bottom, top]), color)

    def ring(self, radii: np.ndarray, heights: np.ndarray, color: np.ndarray, segments: int = 24) -> None:
        """The closed profile loop (``radii`` (K,) > 0, ``heights`` (K,)) turned about the y axis: a hollow wall."""
        k = len(radii)
        angle = np.arange(segments) * 2 * np.pi / segments
        vertices = np.stack([np.outer(radii, np.cos(angle)), np.repeat(heights[:, None], segments, 1),
                             np.outer(radii, np.sin(angle))], -1).reshape(-1, 3)
        j, i = np.meshgrid(np.arange(segments), np.arange(k))
        a, b = i * segments + j, i * segments + (j + 1) % segments
        a2, b2 = (a + segments) % (k * segments), (b + segments) % (k * segments)
        faces = np.concatenate([np.stack([a, a2, b], -1).reshape(-1, 3), np.stack([b, a2, b2], -1).reshape(-1, 3)])
        self._add(vertices, faces, color)

    def _add(self, vertices: np.ndarray, faces: np.ndarray, color: np.ndarray) -> None:
        """One closed part, its faces turned to wind outwards (positive signed volume)."""
        tri = vertices[faces]
        if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
            faces = faces[:, ::-1]
        self.parts.append((vertices, faces))
        self.colors.append(color)

    def color(self) -> np.ndarray:
        if self.rng.random() < 0.6:
            base = _WOODS[self.rng.integers(len(_WOODS))]
        else:
            base = self.rng.uniform(30, 230, 3) if self.rng.random() < 0.5 else np.full(3, self.rng.uniform(30, 230))
        return np.clip(base * self.rng.uniform(0.85, 1.15), 0, 255)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vertices = np.concatenate([v for v, _ in self.parts])
        lo, hi = vertices.min(0), vertices.max(0)
        vertices = (vertices - (lo + hi) / 2) / (hi - lo).max()
        starts = np.cumsum([0] + [len(v) for v, _ in self.parts])
        faces = np.concatenate([f + start for (_, f), start in zip(self.parts, starts)])
        colors = np.concatenate([np.repeat(c[None], len(f), 0) for (_, f), c in zip(self.parts, self.colors)])
        return vertices.astype(np.float32), faces.astype(np.int32), np.round(colors).astype(np.uint8)


def _legs(p: _Parts, x: float, z: float, height: float, t: float, color: np.ndarray) -> None:
    """Four legs of thickness t under the rectangle |x'| <= x, |z'| <= z, from y = 0 to ``height``."""
    for sx in (-1, 1):
        for sz in (-1, 1):
            p.box((sx * x - t / 2, 0, sz * z - t / 2), (sx * x + t / 2, height, sz * z + t / 2), color)


def _rectangular_top(p: _Parts, width: tuple[float, float], depth: tuple[float, float], height: tuple[float, float],
                     thickness: tuple[float, float], two_colors: float) -> tuple[float, float, float, float, np.ndarray, np.ndarray]:
    """A table top of random size in the given (low, high) ranges; returns (w, d, h, top, top colour, leg colour),
    the leg colour differing from the top's with probability ``two_colors``."""
    r = p.rng
    w, d, h, top = r.uniform(*width), r.uniform(*depth), r.uniform(*height), r.uniform(*thickness)
    wood, legs = p.color(), p.color() if r.random() < two_colors else None
    legs = wood if legs is None else legs
    p.box((-w / 2, h - top, -d / 2), (w / 2, h, d / 2), wood)
    return w, d, h, top, wood, legs


def table(p: _Parts) -> None:
    r = p.rng
    w, d, h, top, wood, legs = _rectangular_top(p, (0.6, 1.6), (0.4, 1.0), (0.5, 0.9), (0.02, 0.08), 0.4)
    if r.random() < 0.2:  # pedestal
        t = r.uniform(0.05, 0.15)
        p.box((-t / 2, 0.03, -t / 2), (t / 2, h - top, t / 2), legs)
        b = r.uniform(0.2, 0.45) * min(w, d)
        p.box((-b, 0, -b), (b, 0.03, b), legs)
        return
    t, inset = r.uniform(0.025, 0.08), r.uniform(0.0, 0.08)
    _legs(p, w / 2 - inset - t / 2, d / 2 - inset - t / 2, h - top, t, legs)
    if r.random() < 0.4:  # stretchers
        y, s = r.uniform(0.1, 0.4) * h, t * 0.6
        x, z = w / 2 - inset - t / 2, d / 2 - inset - t / 2
        p.box((-x, y, -z - s / 2), (x, y + s, -z + s / 2), legs)
        p.box((-x, y, z - s / 2), (x, y + s, z + s / 2), legs)


def chair(p: _Parts) -> None:
    r = p.rng
    w, d, h = r.uniform(0.4, 0.6), r.uniform(0.4, 0.6), r.uniform(0.38, 0.5)
    seat_t, back_h, t = r.uniform(0.03, 0.1), r.uniform(0.3, 0.6), r.uniform(0.025, 0.06)
    frame, seat = p.color(), p.color()
    p.box((-w / 2, h - seat_t, -d / 2), (w / 2, h, d / 2), seat)
    if r.random() < 0.25:  # swivel base
        p.box((-t, 0.05, -t), (t, h - seat_t, t), frame)
        for angle in np.arange(5) * 2 * np.pi / 5 + r.uniform(0, 1):
            c, s = np.cos(angle) * 0.25, np.sin(angle) * 0.25
            p.box((min(0, c) - t / 2, 0, min(0, s) - t / 2), (max(0, c) + t / 2, 0.05, max(0, s) + t / 2), frame)
    else:
        _legs(p, w / 2 - t / 2, d / 2 - t / 2, h - seat_t, t, frame)
    bt = r.uniform(0.025, 0.06)
    z0 = d / 2 - bt
    if r.random() < 0.5:  # panel
        p.box((-w / 2, h, z0), (w / 2, h + back_h, d / 2), seat)
    else:  # posts, top rail and slats
        for sx in (-1, 1):
            p.box((sx * (w / 2 - t / 2) - t / 2, h, z0), (sx * (w / 2 - t / 2) + t / 2, h + back_h, d / 2), frame)
        p.box((-w / 2, h + back_h - 0.06, z0), (w / 2, h + back_h, d / 2), frame)
        n = r.integers(0, 5)
        for k in range(n):
            x = -w / 2 + (k + 1) * w / (n + 1)
            p.box((x - 0.015, h, z0), (x + 0.015, h + back_h - 0.06, d / 2), frame)
    if r.random() < 0.3:  # arms
        ah = r.uniform(0.15, 0.25)
        for sx in (-1, 1):
            p.box((sx * w / 2 - 0.03, h + ah - 0.03, -d / 2), (sx * w / 2 + 0.03, h + ah, d / 2), frame)
            p.box((sx * w / 2 - 0.02, h, -d / 2 + 0.02), (sx * w / 2 + 0.02, h + ah, -d / 2 + 0.06), frame)


def bench(p: _Parts) -> None:
    r = p.rng
    w, d, h, top = r.uniform(1.0, 1.8), r.uniform(0.3, 0.5), r.uniform(0.35, 0.5), r.uniform(0.03, 0.08)
    wood, frame = p.color(), p.color()
    if r.random() < 0.5:  # slats
        n = r.integers(3, 6)
        gap = d / n
        for k in range(n):
            p.box((-w / 2, h - top, -d / 2 + k * gap), (w / 2, h, -d / 2 + (k + 0.7) * gap), wood)
    else:
        p.box((-w / 2, h - top, -d / 2), (w / 2, h, d / 2), wood)
    if r.random() < 0.5:  # slab ends
        s = r.uniform(0.03, 0.08)
        for sx in (-1, 1):
            x = sx * (w / 2 - r.uniform(0.05, 0.15))
            p.box((x - s / 2, 0, -d / 2), (x + s / 2, h - top, d / 2), frame)
    else:
        _legs(p, w / 2 - 0.06, d / 2 - 0.04, h - top, r.uniform(0.03, 0.06), frame)
    if r.random() < 0.4:  # back
        p.box((-w / 2, h, d / 2 - 0.04), (w / 2, h + r.uniform(0.25, 0.45), d / 2), wood)


def bed(p: _Parts) -> None:
    r = p.rng
    w, length, h = r.uniform(0.9, 1.8), r.uniform(1.9, 2.1), r.uniform(0.15, 0.3)
    frame, mattress = p.color(), np.clip(np.full(3, r.uniform(180, 245)) * r.uniform(0.9, 1.0, 3), 0, 255)
    leg = r.uniform(0.0, 0.15)
    if leg > 0.03:
        _legs(p, w / 2 - 0.04, length / 2 - 0.04, leg, 0.06, frame)
    p.box((-w / 2, leg, -length / 2), (w / 2, leg + h, length / 2), frame)
    p.box((-w / 2 + 0.03, leg + h, -length / 2 + 0.03), (w / 2 - 0.03, leg + h + r.uniform(0.1, 0.25), length / 2 - 0.03), mattress)
    p.box((-w / 2, 0, length / 2), (w / 2, leg + h + r.uniform(0.4, 0.9), length / 2 + 0.06), frame)  # headboard at +z
    if r.random() < 0.4:
        p.box((-w / 2, 0, -length / 2 - 0.06), (w / 2, leg + h + r.uniform(0.1, 0.35), -length / 2), frame)


def desk(p: _Parts) -> None:
    r = p.rng
    w, d, h, top = r.uniform(1.0, 1.6), r.uniform(0.5, 0.8), r.uniform(0.7, 0.78), r.uniform(0.03, 0.06)
    wood, side = p.color(), p.color()
    p.box((-w / 2, h - top, -d / 2), (w / 2, h, d / 2), wood)
    s = r.uniform(0.03, 0.06)
    left = r.random() < 0.5
    for sx in (-1, 1):
        if left and sx == -1 or (not left and sx == 1 and r.random() < 0.5):
            cw = r.uniform(0.3, 0.45)  # drawer block
            x0 = -w / 2 if sx == -1 else w / 2 - cw
            p.box((x0, 0, -d / 2 + 0.02), (x0 + cw, h - top, d / 2 - 0.02), side)
        else:
            p.box((sx * w / 2 - (s if sx == 1 else 0), 0, -d / 2), (sx * w / 2 + (s if sx == -1 else 0), h - top, d / 2), side)
    if r.random() < 0.5:  # modesty panel at the back
        p.box((-w / 2, h * 0.4, d / 2 - 0.04), (w / 2, h - top, d / 2 - 0.02), side)


def shelf(p: _Parts) -> None:
    r = p.rng
    w, d, h, s = r.uniform(0.5, 1.2), r.uniform(0.25, 0.45), r.uniform(0.8, 2.0), r.uniform(0.02, 0.05)
    wood = p.color()
    for sx in (-1, 1):
        p.box((sx * w / 2 - s / 2, 0, -d / 2), (sx * w / 2 + s / 2, h, d / 2), wood)
    n = r.integers(2, 7)
    for k in range(n + 1):
        y = k * (h - s) / n
        p.box((-w / 2, y, -d / 2), (w / 2, y + s, d / 2), wood)
    if r.random() < 0.5:
        p.box((-w / 2, 0, d / 2 - 0.01), (w / 2, h, d / 2), wood)


def _profile(rng: np.random.Generator, knots: int, low: float, high: float, samples: int = 16) -> np.ndarray:
    """A smooth random radius profile (samples,) between ``low`` and ``high``."""
    control = rng.uniform(low, high, knots)
    return np.interp(np.linspace(0, 1, samples), np.linspace(0, 1, knots), control)


def vessel(p: _Parts) -> None:
    """Vases, bottles, jars and cups: a random smooth profile turned about the y axis."""
    r = p.rng
    height = r.uniform(0.6, 2.5)
    radii = _profile(r, r.integers(3, 6), 0.12, 0.5)
    if r.random() < 0.5:  # bottle: a narrow neck over the last third
        neck = int(len(radii) * r.uniform(0.6, 0.8))
        radii[neck:] = r.uniform(0.06, 0.14)
    heights = np.linspace(0, height, len(radii))
    p.lathe(radii, heights, p.color())
    if r.random() < 0.25:  # a handle on the side, touching the body along its whole height
        y0 = r.uniform(0.2, 0.6) * height
        y1 = y0 + r.uniform(0.15, 0.3) * height
        inner = float(np.interp(np.linspace(y0, y1, 8), heights, radii).min())
        p.box((inner - 0.02, y0, -0.03), (inner + 0.15, y1, 0.03), p.color())


def rifle(p: _Parts) -> None:
    """Barrel towards -z, stock at +z, magazine and grip below: thin in x, like the ShapeNet rifles."""
    r = p.rng

    def box(lo: tuple[float, float, float], hi: tuple[float, float, float], color: np.ndarray) -> None:
        p.box((lo[0], lo[1], -hi[2]), (hi[0], hi[1], -lo[2]), color)  # built barrel-forward, stored mirrored in z

    metal, wood = np.full(3, r.uniform(20, 90)), p.color()
    length, w = r.uniform(0.6, 1.0), r.uniform(0.02, 0.05)
    receiver = (r.uniform(-0.15, 0.0), r.uniform(0.15, 0.3))  # z range
    box((-w, 0, receiver[0]), (w, r.uniform(0.06, 0.12), receiver[1]), metal)
    b = w * r.uniform(0.4, 0.8)
    box((-b, 0.03, receiver[1]), (b, 0.03 + 2 * b, receiver[1] + length * r.uniform(0.4, 0.7)), metal)
    drop = r.uniform(0.0, 0.12)
    box((-w, -drop, receiver[0] - length * r.uniform(0.3, 0.45)), (w, r.uniform(0.06, 0.1), receiver[0]), wood)
    if r.random() < 0.7:
        m = r.uniform(0.03, 0.06)
        box((-w * 0.8, -r.uniform(0.1, 0.25), receiver[1] - 2 * m), (w * 0.8, 0.0, receiver[1] - m * 0.5), metal)
    box((-w * 0.8, -r.uniform(0.08, 0.15), receiver[0]), (w * 0.8, 0.0, receiver[0] + 0.04), wood)
    if r.random() < 0.5:  # scope
        box((-w * 0.7, 0.13, receiver[0] + 0.02), (w * 0.7, 0.17, receiver[1]), metal)


def tool(p: _Parts) -> None:
    """Hand tools standing along y: a turned handle and a head (hammer, blade, screwdriver shaft or wrench)."""
    r = p.rng
    handle = r.uniform(0.3, 0.6)
    p.lathe(_profile(r, 3, 0.025, 0.06, samples=6), np.linspace(0, handle, 6), p.color())
    metal = np.full(3, r.uniform(90, 200))
    kind = r.integers(4)
    if kind == 0:  # hammer
        p.box((-0.015, handle, -0.015), (0.015, handle + 0.3, 0.015), p.color())
        p.box((-r.uniform(0.08, 0.15), handle + 0.25, -0.03), (r.uniform(0.08, 0.15), handle + 0.33, 0.03), metal)
    elif kind == 1:  # blade, flat in the x-y plane
        p.box((-r.uniform(0.03, 0.08), handle, -0.006), (r.uniform(0.0, 0.04), handle + r.uniform(0.3, 0.6), 0.006), metal)
    elif kind == 2:  # screwdriver shaft
        p.lathe(np.full(4, r.uniform(0.006, 0.012)), np.linspace(handle, handle + r.uniform(0.3, 0.6), 4), metal)
    else:  # wrench
        p.box((-0.02, handle, -0.008), (0.02, handle + 0.4, 0.008), metal)
        p.box((-0.05, handle + 0.4, -0.008), (0.05, handle + 0.47, 0.008), metal)


def _seat_or_top(p: _Parts, radius: float, y: float, thickness: float, color: np.ndarray, dome: float = 0.0) -> None:
    """A round disc of ``radius`` whose top is at ``y``; with ``dome`` > 0 a cushion that high rises above it."""
    if dome > 0:
        t = np.linspace(0, 1, 8)
        p.lathe(radius * np.sqrt(np.clip(1 - t**2, 0.02, 1)), y - thickness + (thickness + dome) * t, color)
    else:
        p.lathe(np.full(2, radius), np.array([y - thickness, y]), color)


def _splayed_legs(p: _Parts, n: int, top_radius: float, foot_radius: float, height: float, t: float,
                  color: np.ndarray, stretcher: float | None = None) -> None:
    """``n`` legs from radius ``top_radius`` at ``height`` down to ``foot_radius`` at y = 0, optional ring of rails."""
    angles = np.arange(n) * 2 * np.pi / n + p.rng.uniform(0, 2 * np.pi / n)
    directions = np.stack([np.cos(angles), np.zeros(n), np.sin(angles)], -1)
    tops = directions * top_radius + np.array([0.0, height, 0.0])
    feet = directions * foot_radius
    for top, foot in zip(tops, feet):
        p.beam(foot, top, t, color)
    if stretcher is not None:
        knees = feet + stretcher / height * (tops - feet)
        for k in range(n):
            p.beam(knees[k], knees[(k + 1) % n], t * 0.7, color)


def stool(p: _Parts) -> None:
    """Bar and kitchen stools: a round or square seat (flat or cushioned) on three or four straight or splayed legs."""
    r = p.rng
    h, radius, seat_t = r.uniform(0.4, 0.8), r.uniform(0.14, 0.24), r.uniform(0.03, 0.08)
    seat, frame = p.color(), p.color()
    if r.random() < 0.25:
        p.box((-radius, h - seat_t, -radius), (radius, h, radius), seat)
    else:
        _seat_or_top(p, radius, h, seat_t, seat, dome=r.uniform(0.05, 0.2) if r.random() < 0.4 else 0.0)
    foot = radius * r.uniform(0.7, 1.6)
    stretcher = r.uniform(0.2, 0.45) * h if r.random() < 0.5 else None
    _splayed_legs(p, int(r.integers(3, 5)), radius * r.uniform(0.5, 0.85), foot, h - seat_t, r.uniform(0.02, 0.05),
                  frame, stretcher)


def round_table(p: _Parts) -> None:
    """Round tables (dining, coffee, side): a disc top on legs or a pedestal, sometimes a lower shelf."""
    r = p.rng
    radius, h, top = r.uniform(0.25, 0.6), r.uniform(0.3, 0.78), r.uniform(0.02, 0.06)
    wood, legs = p.color(), p.color()
    _seat_or_top(p, radius, h, top, wood)
    if r.random() < 0.3:  # pedestal on a base disc or on feet
        column = r.uniform(0.03, 0.1)
        p.lathe(np.full(2, column), np.array([0.02, h - top]), legs)
        if r.random() < 0.5:
            p.lathe(np.full(2, radius * r.uniform(0.4, 0.7)), np.array([0.0, 0.03]), legs)
        else:
            _splayed_legs(p, int(r.integers(3, 5)), column, radius * r.uniform(0.5, 0.8), 0.15, 0.04, legs)
        return
    leg_top = radius * r.uniform(0.55, 0.85)
    _splayed_legs(p, int(r.integers(3, 5)), leg_top, leg_top * r.uniform(1.0, 1.3), h - top, r.uniform(0.02, 0.05), legs)
    if r.random() < 0.4:
        _seat_or_top(p, leg_top * 0.95, r.uniform(0.15, 0.4) * h, top, wood)


def frame_table(p: _Parts) -> None:
    """Rectangular tables of thin legs joined by an apron under the top, often with a lower shelf."""
    r = p.rng
    w, d, h, top, wood, frame = _rectangular_top(p, (0.5, 1.6), (0.4, 1.0), (0.35, 1.0), (0.02, 0.05), 0.5)
    t, inset = r.uniform(0.02, 0.05), r.uniform(0.0, 0.05)
    x, z = w / 2 - inset - t / 2, d / 2 - inset - t / 2
    _legs(p, x, z, h - top, t, frame)
    apron = r.uniform(0.03, 0.1)
    p.box((-x, h - top - apron, -z - t / 4), (x, h - top, -z + t / 4), frame)
    p.box((-x, h - top - apron, z - t / 4), (x, h - top, z + t / 4), frame)
    p.box((-x - t / 4, h - top - apron, -z), (-x + t / 4, h - top, z), frame)
    p.box((x - t / 4, h - top - apron, -z), (x + t / 4, h - top, z), frame)
    if r.random() < 0.6:  # lower shelf between the legs
        y = r.uniform(0.08, 0.35) * h
        p.box((-x, y, -z), (x, y + r.uniform(0.015, 0.04), z), wood)


def pan(p: _Parts) -> None:
    """Frying pans, saucepans and pots lying on y = 0: a hollow turned body and a long handle or two side grips."""
    r = p.rng
    radius, height, wall = r.uniform(0.3, 0.5), r.uniform(0.05, 0.45), r.uniform(0.01, 0.025)
    flare = r.uniform(0.0, 0.15) * radius if height < 0.2 else r.uniform(0.0, 0.03)
    metal = np.full(3, r.uniform(30, 200))
    base = radius - flare
    p.lathe(np.full(2, base), np.array([0.0, wall * 1.5]), metal)
    p.ring(np.array([base, radius, radius - wall, base - wall]), np.array([0.0, height, height, wall]), metal)
    grip = p.color() if r.random() < 0.6 else metal
    y = height * r.uniform(0.6, 0.95)
    if height < 0.25 or r.random() < 0.5:  # one long handle along +x, rising a little
        length = r.uniform(0.5, 1.0) * radius * 2
        p.beam((radius - 2 * wall, y, 0), (radius + length, y + length * r.uniform(0.0, 0.3), 0), r.uniform(0.02, 0.04),
               grip, depth=r.uniform(0.03, 0.06))
    else:  # two side grips
        for sx in (-1, 1):
            p.box((sx * radius - 0.08, y - 0.03, -0.06), (sx * radius + 0.08, y, 0.06), grip)


def aeroplane(p: _Parts) -> None:
    """Airliners, jets and light aircraft: a turned fuselage along z, swept wings along x, fin and tailplane."""
    r = p.rng
    length, radius = 1.0, r.uniform(0.04, 0.09)
    body = np.clip(np.full(3, r.uniform(170, 250)) * r.uniform(0.9, 1.0, 3), 0, 255) if r.random() < 0.7 else p.color()
    trim = p.color()
    t = np.linspace(0, 1, 12)
    profile = radius * np.clip(np.minimum(1.0, np.minimum(t / 0.12, (1 - t) / 0.3)), 0.05, 1) ** 0.5
    p.lathe(profile, (t - 0.5) * length, body, along_z=True)  # nose at -z, tail at +z
    span, chord = r.uniform(0.6, 1.5), r.uniform(0.08, 0.2)
    sweep, wing_z, wing_y = r.uniform(0.0, 0.3), r.uniform(-0.15, 0.05), r.uniform(-0.6, 0.3) * radius
    for sx in (-1, 1):
        p.beam((0, wing_y, wing_z), (sx * span / 2, wing_y + r.uniform(0, 0.04), wing_z + sweep * span / 2), chord, body,
               depth=r.uniform(0.01, 0.025))
        if r.random() < 0.6:  # an engine under each wing
            x = sx * span * r.uniform(0.15, 0.3)
            p.lathe(np.full(3, radius * r.uniform(0.35, 0.6)), np.array([-0.08, 0.0, 0.08]), trim,
                    offset=(x, wing_y - radius * 0.6, wing_z + abs(x) * sweep - 0.05), along_z=True)
    tail_z, tail_span = length / 2 - 0.08, span * r.uniform(0.25, 0.4)
    for sx in (-1, 1):
        p.beam((0, radius * 0.3, tail_z), (sx * tail_span / 2, radius * 0.3, tail_z + 0.05), chord * 0.6, body, depth=0.012)
    p.beam((0, radius * 0.5, tail_z - 0.04), (0, radius * 0.5 + r.uniform(0.1, 0.2), tail_z + 0.04), chord * 0.8, trim,
           depth=0.012)


def sofa(p: _Parts) -> None:
    """Sofas and armchairs along x: a base under seat cushions, a back on the +z side, arms, sometimes a chaise."""
    r = p.rng
    w, d, h, leg = r.uniform(0.8, 2.4), r.uniform(0.7, 1.0), r.uniform(0.35, 0.48), r.uniform(0.0, 0.15)
    fabric, frame = p.color(), p.color()
    if leg > 0.03:
        _legs(p, w / 2 - 0.05, d / 2 - 0.05, leg, r.uniform(0.03, 0.06), frame)
    cushion = r.uniform(0.06, 0.15)
    p.box((-w / 2, leg, -d / 2), (w / 2, h - cushion, d / 2), fabric)
    back_t, arm_w = r.uniform(0.12, 0.25), r.uniform(0.08, 0.22) if r.random() < 0.85 else 0.0
    n = int(r.integers(1, 4))
    inner = w - 2 * arm_w
    for k in range(n):
        x0 = -inner / 2 + k * inner / n
        p.box((x0 + 0.005, h - cushion, -d / 2), (x0 + inner / n - 0.005, h, d / 2 - back_t), fabric)
    p.box((-w / 2, leg, d / 2 - back_t), (w / 2, h + r.uniform(0.25, 0.5), d / 2), fabric)
    if arm_w:
        arm_h = h + r.uniform(0.05, 0.25)
        for x0 in (-w / 2, w / 2 - arm_w):
            p.box((x0, leg, -d / 2), (x0 + arm_w, arm_h, d / 2 - back_t), fabric)
    if w > 1.5 and r.random() < 0.25:  # a chaise longue on one side, reaching forward to -z
        x0, x1 = (-w / 2, -w / 2 + r.uniform(0.6, 0.8)) if r.random() < 0.5 else (w / 2 - r.uniform(0.6, 0.8), w / 2)
        p.box((x0, leg, -d / 2 - r.uniform(0.5, 0.8)), (x1, h, -d / 2), fabric)


def bathtub(p: _Parts) -> None:
    """Bathtubs along x: a floor slab and four walls around an open basin, built in or on four short feet."""
    r = p.rng
    length, w, h, t = r.uniform(1.4, 1.9), r.uniform(0.6, 0.9), r.uniform(0.4, 0.65), r.uniform(0.04, 0.12)
    enamel = np.clip(np.full(3, r.uniform(200, 250)) * r.uniform(0.92, 1.0, 3), 0, 255) if r.random() < 0.8 else p.color()
    foot = r.uniform(0.08, 0.2) if r.random() < 0.3 else 0.0
    if foot:
        _legs(p, length / 2 - 0.15, w / 2 - 0.1, foot, 0.06, p.color())
    p.box((-length / 2, foot, -w / 2), (length / 2, foot + t, w / 2), enamel)
    for x0 in (-length / 2, length / 2 - t):  # end walls
        p.box((x0, foot + t, -w / 2), (x0 + t, foot + h, w / 2), enamel)
    for z0 in (-w / 2, w / 2 - t):  # side walls between them
        p.box((-length / 2 + t, foot + t, z0), (length / 2 - t, foot + h, z0 + t), enamel)


def toilet(p: _Parts) -> None:
    """Toilets: an elongated turned bowl on a narrow foot, a seat on top and a cistern on the +z side."""
    r = p.rng
    ceramic = np.clip(np.full(3, r.uniform(210, 250)) * r.uniform(0.95, 1.0, 3), 0, 255)
    h, radius = r.uniform(0.36, 0.45), r.uniform(0.17, 0.22)
    t = np.linspace(0, 1, 8)
    profile = radius * (r.uniform(0.45, 0.6) + (1 - r.uniform(0.45, 0.6)) * t ** r.uniform(0.7, 2.0))
    stretch = r.uniform(1.15, 1.45)
    p.lathe(profile, h * t, ceramic, scale=(1.0, 1.0, stretch))
    p.lathe(np.full(2, radius * 1.02), np.array([h, h + r.uniform(0.02, 0.05)]), p.color() if r.random() < 0.3 else ceramic,
            scale=(1.0, 1.0, stretch))
    tank_w, tank_d = r.uniform(0.3, 0.5), r.uniform(0.12, 0.22)
    z1 = radius * stretch + r.uniform(0.0, 0.1)
    if r.random() < 0.8:  # cistern on the bowl's back
        p.box((-tank_w / 2, h * r.uniform(0.6, 1.0), z1 - tank_d), (tank_w / 2, h + r.uniform(0.3, 0.45), z1), ceramic)
    else:  # wall-hung: a slim panel behind
        p.box((-tank_w / 2, 0, z1 - 0.05), (tank_w / 2, h + r.uniform(0.2, 0.5), z1), ceramic)


def piano(p: _Parts) -> None:
    """Upright and grand pianos, the keyboard on the -z side; a grand's case reaches back to +z on three legs."""
    r = p.rng
    case = np.full(3, r.uniform(10, 40)) if r.random() < 0.7 else p.color()
    keys = np.clip(np.full(3, r.uniform(220, 250)), 0, 255)
    w, key_y = r.uniform(1.3, 1.6), r.uniform(0.68, 0.76)
    if r.random() < 0.5:  # upright
        d, h = r.uniform(0.45, 0.65), r.uniform(1.0, 1.35)
        p.box((-w / 2, 0, 0), (w / 2, h, d), case)
        p.box((-w / 2, key_y - 0.1, -0.25), (w / 2, key_y, 0), case)
        p.box((-w / 2 + 0.06, key_y, -0.22), (w / 2 - 0.06, key_y + 0.03, -0.05), keys)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.05)
            p.box((x - 0.03, 0, -0.23), (x + 0.03, key_y - 0.1, -0.17), case)
        return
    length, body = r.uniform(1.2, 2.4), r.uniform(0.25, 0.35)
    y0 = key_y - 0.1
    p.box((-w / 2, y0, 0), (w / 2, y0 + body, length * 0.45), case)  # the wide front half
    narrow = w * r.uniform(0.35, 0.6)  # the curved tail, stepped towards the bass side (-x)
    p.box((-w / 2, y0, length * 0.45), (-w / 2 + narrow, y0 + body, length), case)
    p.box((-w / 2 + narrow, y0, length * 0.45), (w / 2 - 0.1, y0 + body, length * 0.7), case)
    p.box((-w / 2, key_y - 0.1, -0.2), (w / 2, key_y, 0), case)
    p.box((-w / 2 + 0.06, key_y, -0.18), (w / 2 - 0.06, key_y + 0.03, -0.02), keys)
    for x, z in ((-w / 2 + 0.1, 0.1), (w / 2 - 0.1, 0.1), (-w / 2 + narrow / 2, length - 0.15)):
        p.box((x - 0.04, 0, z - 0.04), (x + 0.04, y0, z + 0.04), case)
    if r.random() < 0.5:  # the lid propped open, hinged on the -x side
        lift = r.uniform(0.3, 0.6)
        p.beam((-w / 2, y0 + body, length * 0.5), (w / 2 - 0.1, y0 + body + lift, length * 0.5), length * 0.8, case, depth=0.02)


KINDS = {"table": table, "chair": chair, "bench": bench, "bed": bed, "desk": desk, "shelf": shelf, "vessel": vessel,
         "rifle": rifle, "tool": tool, "stool": stool, "round_table": round_table, "frame_table": frame_table, "pan": pan,
         "aeroplane": aeroplane, "sofa": sofa, "bathtub": bathtub, "toilet": toilet, "piano": piano}
WEIGHTS = {"table": 0.3, "chair": 0.25, "bench": 0.1, "bed": 0.1, "desk": 0.15, "shelf": 0.1, "vessel": 0.0, "rifle": 0.0,
           "tool": 0.0, "stool": 0.0, "round_table": 0.0, "frame_table": 0.0, "pan": 0.0, "aeroplane": 0.0,
           "sofa": 0.0, "bathtub": 0.0, "toilet": 0.0, "piano": 0.0}


def make(count: int, seed: int, kinds: list[str] | None = None) -> dict[str, np.ndarray]:
    """``count`` random pieces of furniture as the arrays of a shapes file.

    All share the category ``procedural`` (so category-balanced sampling treats them as one category); the kind
    is in the model id, ``procedural_<kind>_<index>``.
    """
    rng = np.random.default_rng(seed)
    names = kinds or [k for k in KINDS if WEIGHTS[k] > 0]
    weights = np.array([WEIGHTS[k] if not kinds else 1.0 for k in names])
    kinds = rng.choice(names, size=count, p=weights / weights.sum())
    verts, faces, colors, vox, shell = [], [], [], [], []
    for kind in kinds:
        parts = _Parts(rng)
        KINDS[str(kind)](parts)
        v, f, c = parts.mesh()
        verts.append(v), faces.append(f), colors.append(c)
        packed = shapes_file_voxels(torch.from_numpy(v), torch.from_numpy(f.astype(np.int64)))
        vox.append(packed[0]), shell.append(packed[1])
    return dict(
        vertices=np.concatenate(verts), faces=np.concatenate(faces), face_colors=np.concatenate(colors),
        vert_offsets=np.cumsum([0] + [len(v) for v in verts]).astype(np.int64),
        face_offsets=np.cumsum([0] + [len(f) for f in faces]).astype(np.int64),
        voxels=np.stack(vox), voxels_shell=np.stack(shell),
        category=np.array(["procedural"] * count), model_id=np.array([f"procedural_{k}_{i:05d}" for i, k in enumerate(kinds)]),
        source=np.array(["procedural"] * count), has_color=np.ones(count, bool),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", choices=sorted(KINDS), help="only these kinds, equally often (default: furniture)")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **make(args.count, args.seed, args.kinds))
    print(atomic_write(args.out, lambda fh: fh.write(buffer.getvalue())))


if __name__ == "__main__":
    main()
