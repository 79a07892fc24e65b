"""Reading and atomic writing of triangle meshes as OBJ, PLY and GLB (glTF 2.0 binary) files.

The format follows the file suffix (case-insensitive). In memory a mesh is a :class:`softras.mesh.Mesh`:
vertices (V, 3) float32 in the object frame (Y-up, file units), faces (F, 3) int64, vertex colours (V, 3)
float32 sRGB in [0, 1] or None, and an optional :class:`softras.mesh.Texture` (per-corner UVs, an sRGB image).
Polygons are fan-triangulated on reading. OBJ and PLY store colours as sRGB; glTF stores them linear, so GLB
colours are converted on both reading and writing.

Textures: a GLB embeds the image as PNG in its binary chunk, used as the material's ``baseColorTexture`` (sRGB)
with ``TEXCOORD_0``; vertices are split per face corner (glTF attributes are per vertex) and welded again on
reading. The glTF specification makes ``COLOR_0`` a multiplier of the base colour, so a textured GLB keeps the
vertex colours in the application-specific attribute ``_VERTEX_COLOR`` (linear, as ``COLOR_0``), which viewers do
not apply and Blender imports as an attribute. An OBJ refers to ``<name>.mtl`` (``map_Kd``) and ``<name>.png``
beside it; the three files are written together (:func:`softras.fileio.atomic_write_group`). PLY has no textures:
a textured mesh is written with its vertex colours only.

Malformed files raise ``ValueError("<path>: <what is wrong>")``.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from softras.colorspace import linear_to_srgb, srgb_to_linear
from softras.fileio import atomic_write, atomic_write_group
from softras.mesh import Mesh, Texture

__all__ = ["read_mesh", "write_mesh"]

# A reader's result: vertices (V, 3), faces (F, 3), sRGB colours (V, 3) or None (numpy), and a texture or None.
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, Texture | None]
_VERTEX_COLOR = "_VERTEX_COLOR"  # a textured GLB's vertex colours (see the module docstring)
_MATERIAL = "softras"


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh from an .obj, .ply or .glb file.

    Raises ValueError for an unsupported suffix or malformed content (the message starts with the path) and
    FileNotFoundError for a missing file.
    """
    path = Path(path)
    reader = _codec(path)[0]
    data = path.read_bytes()
    try:
        vertices, faces, colors, texture = reader(data, path)
        return Mesh(torch.tensor(vertices, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64),
                    None if colors is None else torch.tensor(colors, dtype=torch.float32), texture)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    except (IndexError, KeyError, TypeError, AttributeError, OverflowError, struct.error) as e:
        raise ValueError(f"{path}: malformed {path.suffix.lower()} file ({type(e).__name__}: {e})") from e


def write_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to an .obj, .ply or .glb file atomically and return the path.

    See :func:`softras.fileio.atomic_write`: ``path`` holds either its previous content or the complete new
    file. A textured mesh written as OBJ also writes ``<stem>.mtl`` and ``<stem>.png`` beside it, all or none.
    Raises FileNotFoundError when the directory is missing and PermissionError when it is not writable.
    """
    path = Path(path)
    writer = _codec(path)[1]
    if mesh.texture is not None and path.suffix.lower() == ".obj":
        mtl, png = path.with_suffix(".mtl"), path.with_suffix(".png")
        image = _png(mesh.texture.image)
        atomic_write_group([(png, lambda fh: fh.write(image)), (mtl, lambda fh: fh.write(_mtl(png.name))),
                            (path, lambda fh: _write_obj(mesh, fh, mtl.name))])
        return path
    return atomic_write(path, lambda fh: writer(mesh, fh))


def _codec(path: Path) -> tuple[Callable[[bytes, Path], _Arrays], Callable[[Mesh, BinaryIO], None]]:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: unsupported mesh format {suffix or '(no suffix)'!r}; "
                         f"supported: {', '.join(_FORMATS)}")
    return _FORMATS[suffix]


# ----------------------------------------------------------------------------------------------- shared

def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _png(image: torch.Tensor) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(_numpy(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_image(data: bytes, name: str) -> torch.Tensor:
    """(H, W, 3) uint8 of an encoded image (any format Pillow reads)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode texture image {name}: {e}") from None


def _fan(flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as concatenated vertex indices ``flat`` and per-polygon ``counts``.

    Returns (F, 3) int64 in polygon order; polygon ``(a, b, c, d, ...)`` gives ``(a, b, c), (a, c, d), ...``.
    """
    counts = counts.astype(np.int64)
    if (counts < 3).any():
        raise ValueError(f"face with {int(counts.min())} vertices (at least 3 needed)")
    starts = np.cumsum(counts) - counts
    ntri = counts - 2
    poly = np.repeat(np.arange(len(counts)), ntri)
    k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1  # 1 .. n-2 per polygon
    first = starts[poly]
    flat = flat.astype(np.int64)
    return np.stack([flat[first], flat[first + k], flat[first + k + 1]], axis=1)


# ----------------------------------------------------------------------------------------------- OBJ

def _read_obj(data: bytes, path: Path) -> _Arrays:
    """``v x y z [r g b]`` vertices and ``f`` polygons; colours are kept only when every vertex has them. The
    texture is read when every face corner has a ``vt`` and the first ``usemtl`` material of the ``mtllib`` file
    beside ``path`` has a readable ``map_Kd`` image."""
    vertices, colors, uvs, flat, flat_uv, counts = [], [], [], [], [], []
    mtllib, material = None, None
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] not in ("v", "vt", "f", "mtllib", "usemtl"):
            continue
        try:
            if parts[0] == "v":
                values = [float(x) for x in parts[1:]]
                if len(values) not in (3, 4, 6):
                    raise ValueError(f"vertex needs 3 coordinates (optionally w or r g b), got {len(values)} values")
                vertices.append(values[:3])
                if len(values) == 6:
                    colors.append(values[3:])
            elif parts[0] == "vt":
                uvs.append([float(x) for x in parts[1:3]] + [0.0] * (3 - len(parts)))
            elif parts[0] == "f":
                indices = [_obj_index(tok, len(vertices), len(uvs)) for tok in parts[1:]]
                if len(indices) < 3:
                    raise ValueError(f"face with {len(indices)} vertices (at least 3 needed)")
                flat.extend(i for i, _ in indices)
                flat_uv.extend(t for _, t in indices)
                counts.append(len(indices))
            elif parts[0] == "mtllib" and mtllib is None:
                mtllib = line.split(None, 1)[1].strip()
            elif parts[0] == "usemtl" and material is None:
                material = line.split(None, 1)[1].strip()
        except ValueError as e:
            raise ValueError(f"line {lineno}: {e}") from None
    v = np.array(vertices, dtype=np.float32).reshape(-1, 3)
    counts_array = np.array(counts, dtype=np.int64)
    f = _fan(np.array(flat, dtype=np.int64), counts_array)
    c = np.array(colors, dtype=np.float32) if colors and len(colors) == len(vertices) else None
    texture = None
    if mtllib and counts and all(t is not None for t in flat_uv):
        image = _mtl_texture(path.parent / mtllib, material)
        if image is not None:
            corner_uv = np.array(uvs, dtype=np.float32)[_fan(np.array(flat_uv, dtype=np.int64), counts_array)]
            texture = Texture(torch.from_numpy(corner_uv * [1, -1] + [0, 1]), image)  # OBJ's v points up
    return v, f, c, texture


def _obj_index(token: str, num_vertices: int, num_uvs: int) -> tuple[int, int | None]:
    """0-based vertex and texture-coordinate indices of a face token ``i``, ``i/t``, ``i//n`` or ``i/t/n``
    (negative: relative); the texture index is None when absent."""
    fields = token.split("/")
    i = int(fields[0])
    if i == 0:
        raise ValueError("vertex index 0 in face (OBJ indices start at 1)")
    t = int(fields[1]) if len(fields) > 1 and fields[1] else None
    if t is not None and not (0 < t <= num_uvs or -num_uvs <= t < 0):
        raise ValueError(f"texture coordinate index {t} out of range (1..{num_uvs})")
    return (i - 1 if i > 0 else num_vertices + i), (None if t is None else t - 1 if t > 0 else num_uvs + t)


def _mtl_texture(mtl: Path, material: str | None) -> torch.Tensor | None:
    """The ``map_Kd`` image (H, W, 3) uint8 of ``material`` (or of the first material) in the .mtl file ``mtl``;
    None when the file, the material, its map or the image is missing."""
    try:
        lines = mtl.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    current, maps = None, {}
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == "newmtl":
            current = parts[1].strip()
        elif len(parts) == 2 and parts[0] == "map_Kd" and current is not None:
            maps.setdefault(current, parts[1].strip().split()[-1])  # options before the file name are skipped
    name = maps.get(material) if material is not None else next(iter(maps.values()), None)
    if name is None or not (mtl.parent / name).is_file():
        return None
    return _decode_image((mtl.parent / name).read_bytes(), name)


def _mtl(image_name: str) -> bytes:
    """The .mtl of a textured OBJ: one material, white diffuse colour modulated by ``map_Kd``."""
    return (f"# softras\nnewmtl {_MATERIAL}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {image_name}\n").encode("utf-8")


def _write_obj(mesh: Mesh, fh: BinaryIO, mtllib: str | None = None) -> None:
    """``v x y z [r g b]`` (9 significant digits for positions, 6 for sRGB colours), ``f a b c`` 1-based; with
    ``mtllib`` (the textured case) also ``vt u v`` per face corner (v up, as OBJ has it) and ``f a/t b/t c/t``."""
    fh.write(b"# softras\n")
    if mtllib is not None:
        fh.write(f"mtllib {mtllib}\n".encode("utf-8"))
    v = _numpy(mesh.vertices)
    if mesh.vertex_colors is None:
        np.savetxt(fh, v, fmt="v %.9g %.9g %.9g")
    else:
        np.savetxt(fh, np.hstack([v.astype(np.float64), _numpy(mesh.vertex_colors)]),
                   fmt="v %.9g %.9g %.9g %.6g %.6g %.6g")
    faces = _numpy(mesh.faces) + 1
    if mtllib is None:
        np.savetxt(fh, faces, fmt="f %d %d %d")
        return
    uv = _numpy(mesh.texture.uv).reshape(-1, 2).astype(np.float64)
    np.savetxt(fh, np.stack([uv[:, 0], 1 - uv[:, 1]], axis=1), fmt="vt %.7g %.7g")
    fh.write(f"usemtl {_MATERIAL}\n".encode("utf-8"))
    corners = np.arange(1, faces.size + 1).reshape(-1, 3)
    np.savetxt(fh, np.stack([faces, corners], axis=2).reshape(-1, 6), fmt="f %d/%d %d/%d %d/%d")


# ----------------------------------------------------------------------------------------------- PLY

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}

# A property: (name, value type, count type or None for a scalar); types are numpy codes like "u1".
_Prop = tuple[str, str, str | None]
# An element's data per property: a (N,) array for a scalar, (flat values, per-row counts) for a list.
_Column = np.ndarray | tuple[np.ndarray, np.ndarray]


def _read_ply(data: bytes, path: Path) -> _Arrays:
    """PLY (ascii, binary little or big endian): x, y, z, optional red, green, blue, faces from the
    ``vertex_indices`` (or ``vertex_index``) list; other properties and elements are skipped."""
    fmt, elements, body = _ply_header(data)
    values = None if fmt is not None else np.array(body.split(), dtype=np.float64)
    pos, parsed = 0, {}
    for name, count, props in elements:
        if fmt is None:
            columns, pos = _ply_ascii_element(values, pos, count, props, name)
        else:
            columns, pos = _ply_binary_element(body, pos, count, props, fmt, name)
        parsed.setdefault(name, {p[0]: col for p, col in zip(props, columns)})
    vertex, face = parsed.get("vertex", {}), parsed.get("face", {})
    if not all(k in vertex for k in "xyz"):
        raise ValueError("vertex element with x, y, z properties missing")
    v = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float32)
    c = None
    if all(k in vertex for k in ("red", "green", "blue")):
        c = np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1)
        c = (c / np.iinfo(c.dtype).max if c.dtype.kind in "iu" else c).astype(np.float32)
    lists = [face[k] for k in ("vertex_indices", "vertex_index") if isinstance(face.get(k), tuple)]
    f = _fan(*lists[0]) if lists else np.zeros((0, 3), dtype=np.int64)
    return v, f, c, None


def _ply_header(data: bytes) -> tuple[str | None, list[tuple[str, int, list[_Prop]]], bytes]:
    """Parse the header: (byte order "<"/">" or None for ascii, [(element, count, properties)], body)."""
    if not data.startswith(b"ply") or data[3:4] not in (b"\n", b"\r"):
        raise ValueError("not a PLY file (missing 'ply' magic)")
    end = data.find(b"end_header")
    newline = data.find(b"\n", end)
    if end < 0 or newline < 0:
        raise ValueError("PLY header has no end_header line")
    fmt, elements = "", []
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3 and words[1] in _PLY_FORMATS:
            fmt = _PLY_FORMATS[words[1]]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == (5 if words[1] == "list" else 3):
            *types, prop = words[2:] if words[1] == "list" else words[1:]
            if any(t not in _PLY_TYPES for t in types):
                raise ValueError(f"unknown PLY property type in {line.strip()!r}")
            count_type = _PLY_TYPES[types[0]] if len(types) == 2 else None
            elements[-1][2].append((prop, _PLY_TYPES[types[-1]], count_type))
        else:
            raise ValueError(f"bad PLY header line {line.strip()!r}")
    if fmt == "":
        raise ValueError("PLY header has no valid format line")
    return fmt, elements, data[newline + 1:]


def _ply_ascii_element(values: np.ndarray, pos: int, count: int, props: list[_Prop],
                       name: str) -> tuple[list[_Column], int]:
    """Read ``count`` rows of an element from the ascii token ``values`` starting at token ``pos``."""
    truncated = f"truncated PLY data in element {name!r}"
    if count == 0:
        return [_column([], dtype, count_type) for _, dtype, count_type in props], pos
    # Fast path: every list has the length it has in the first row, so the rows form a table.
    lengths, p = [], pos
    for _, _, count_type in props:
        if p >= len(values):
            raise ValueError(truncated)
        lengths.append(int(values[p]) if count_type else 0)
        if lengths[-1] < 0:
            raise ValueError(f"negative list length in element {name!r}")
        p += 1 + lengths[-1]
    width = p - pos
    if pos + count * width <= len(values):
        table = values[pos:pos + count * width].reshape(count, width)
        columns, col = [], 0
        for (_, dtype, count_type), n in zip(props, lengths):
            if count_type is None:
                columns.append(table[:, col].astype(dtype))
            else:
                columns.append((table[:, col + 1:col + 1 + n].reshape(-1).astype(dtype), table[:, col]))
            col += 1 + n
        if all(np.all(c[1] == n) for c, n in zip(columns, lengths) if isinstance(c, tuple)):
            return columns, pos + count * width
    # Slow path: ragged lists, row by row.
    rows: list[list] = [[] for _ in props]
    for _ in range(count):
        for j, (_, _, count_type) in enumerate(props):
            n = int(values[pos]) if count_type and pos < len(values) else 0
            if n < 0 or pos + 1 + n > len(values):
                raise ValueError(truncated)
            rows[j].append(values[pos + 1:pos + 1 + n] if count_type else values[pos])
            pos += 1 + n
    return [_column(r, dtype, count_type) for r, (_, dtype, count_type) in zip(rows, props)], pos


def _ply_binary_element(body: bytes, pos: int, count: int, props: list[_Prop], order: str,
                        name: str) -> tuple[list[_Column], int]:
    """Read ``count`` rows of an element from binary ``body`` at byte ``pos``; ``order`` is "<" or ">"."""
    truncated = f"truncated PLY data in element {name!r}"
    if count == 0:
        return [_column([], dtype, count_type) for _, dtype, count_type in props], pos
    # Fast path: every list has the length it has in the first row, so one structured dtype reads all rows.
    fields, lengths, p = [], [], pos
    for j, (_, dtype, count_type) in enumerate(props):
        if count_type is None:
            fields.append((f"p{j}", order + dtype))
            lengths.append(0)
        else:
            if p + np.dtype(count_type).itemsize > len(body):
                raise ValueError(truncated)
            lengths.append(int(np.frombuffer(body, order + count_type, 1, p)[0]))
            if lengths[-1] < 0:
                raise ValueError(f"negative list length in element {name!r}")
            fields += [(f"n{j}", order + count_type), (f"p{j}", order + dtype, (lengths[-1],))]
        p = pos + np.dtype(fields).itemsize
    row = np.dtype(fields)
    if pos + count * row.itemsize <= len(body):
        table = np.frombuffer(body, row, count, pos)
        columns = [(table[f"p{j}"].reshape(-1), table[f"n{j}"]) if count_type else table[f"p{j}"]
                   for j, (_, _, count_type) in enumerate(props)]
        if all(np.all(c[1] == n) for c, n in zip(columns, lengths) if isinstance(c, tuple)):
            return columns, pos + count * row.itemsize
    # Slow path: ragged lists, row by row.
    rows: list[list] = [[] for _ in props]
    try:
        for _ in range(count):
            for j, (_, dtype, count_type) in enumerate(props):
                n = 1
                if count_type is not None:
                    (n,) = struct.unpack_from(order + np.dtype(count_type).char, body, pos)
                    if n < 0:
                        raise ValueError(f"negative list length in element {name!r}")
                    pos += np.dtype(count_type).itemsize
                values = struct.unpack_from(f"{order}{n}{np.dtype(dtype).char}", body, pos)
                rows[j].append(values if count_type else values[0])
                pos += n * np.dtype(dtype).itemsize
    except struct.error:
        raise ValueError(truncated) from None
    return [_column(r, dtype, count_type) for r, (_, dtype, count_type) in zip(rows, props)], pos


def _column(rows: list, dtype: str, count_type: str | None) -> _Column:
    """Per-row values of one property as a scalar array or (flat values, counts)."""
    if count_type is None:
        return np.array(rows, dtype=dtype)
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype)
    return flat, counts


def _write_ply(mesh: Mesh, fh: BinaryIO) -> None:
    """Binary little-endian PLY: float x, y, z, uchar red, green, blue (sRGB), int vertex_indices."""
    v = _numpy(mesh.vertices)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.zeros(len(v), dtype=fields)
    for j, k in enumerate("xyz"):
        vertex[k] = v[:, j]
    if mesh.vertex_colors is not None:
        c = np.clip(np.round(_numpy(mesh.vertex_colors).astype(np.float64) * 255), 0, 255).astype(np.uint8)
        for j, k in enumerate(("red", "green", "blue")):
            vertex[k] = c[:, j]
    face = np.zeros(mesh.num_faces, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"] = 3
    face["i"] = _numpy(mesh.faces)
    header = ["ply", "format binary_little_endian 1.0", "comment softras", f"element vertex {len(v)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {k}" for k, t in fields]
    header += [f"element face {mesh.num_faces}", "property list uchar int vertex_indices", "end_header", ""]
    fh.write("\n".join(header).encode("ascii"))
    fh.write(vertex.tobytes())
    fh.write(face.tobytes())


# ----------------------------------------------------------------------------------------------- GLB

_GLB_MAGIC, _GLB_JSON, _GLB_BIN = b"glTF", 0x4E4F534A, 0x004E4942
_GLTF_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "i2", 5123: "u2", 5125: "u4", 5126: "f4"}
_GLTF_TYPES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TRIANGLES = 4


def _read_glb(data: bytes, path: Path) -> _Arrays:
    """All TRIANGLES primitives of all meshes, placed by their nodes' world transforms (when there are
    nodes), merged into one mesh. Colours (COLOR_0, else ``_VERTEX_COLOR``, linear) are returned as sRGB;
    primitives without them are white when others have them. A file with a single primitive whose material has
    an embedded ``baseColorTexture`` keeps its texture, its vertices welded where position and colour agree."""
    gltf, binary = _glb_chunks(data)
    parts = []
    for mesh_index, world in _mesh_instances(gltf):
        for prim in gltf["meshes"][mesh_index]["primitives"]:
            parts.append(_primitive(gltf, binary, prim, world))
    if not parts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), None, None
    offsets = np.cumsum([0] + [len(v) for v, _, _, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _, _, _ in parts])
    faces = np.concatenate([f + o for (_, f, _, _), o in zip(parts, offsets)])
    colors = None
    if any(c is not None for _, _, c, _ in parts):
        colors = linear_to_srgb(np.concatenate([np.ones_like(v) if c is None else c for v, _, c, _ in parts]))
    texture = parts[0][3] if len(parts) == 1 else None
    if texture is None:
        return vertices, faces, colors, None
    keys = vertices if colors is None else np.hstack([vertices, colors.astype(np.float32)])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # welded vertices in the order of their first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    welded = first[order]
    return (vertices[welded], rank[inverse.reshape(-1)][faces], None if colors is None else colors[welded],
            Texture(torch.from_numpy(texture[0]), texture[1]))


def _glb_chunks(data: bytes) -> tuple[dict, bytes]:
    """The JSON document and the BIN chunk (b"" when absent) of a GLB file."""
    if len(data) < 12 or data[:4] != _GLB_MAGIC:
        raise ValueError("not a GLB file (bad magic)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise ValueError(f"unsupported glTF version {version} (only 2 is supported)")
    if length > len(data):
        raise ValueError(f"truncated GLB: header says {length} bytes, file has {len(data)}")
    chunks, pos = [], 12
    while pos < length:
        if pos + 8 > length:
            raise ValueError("truncated GLB chunk header")
        size, kind = struct.unpack_from("<II", data, pos)
        if pos + 8 + size > length:
            raise ValueError(f"truncated GLB chunk at byte {pos}: needs {size} bytes, {length - pos - 8} left")
        chunks.append((kind, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (-size % 4)
    if not chunks or chunks[0][0] != _GLB_JSON:
        raise ValueError("GLB has no JSON chunk first")
    gltf = json.loads(chunks[0][1].rstrip(b" \x00"))
    binary = next((chunk for kind, chunk in chunks[1:] if kind == _GLB_BIN), b"")
    return gltf, binary


def _mesh_instances(gltf: dict) -> list[tuple[int, np.ndarray]]:
    """(mesh index, 4x4 world matrix) for every node with a mesh in the default scene; without scenes
    the root nodes are used, without nodes every mesh with the identity."""
    nodes = gltf.get("nodes", [])
    if "scenes" in gltf:
        roots = gltf["scenes"][gltf.get("scene", 0)].get("nodes", [])
    elif nodes:
        children = {c for node in nodes for c in node.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    else:
        return [(i, np.eye(4)) for i in range(len(gltf.get("meshes", [])))]
    instances: list[tuple[int, np.ndarray]] = []

    def visit(index: int, parent: np.ndarray, ancestors: frozenset) -> None:
        if index in ancestors:
            raise ValueError(f"glTF node {index} is its own ancestor")
        node = nodes[index]
        world = parent @ _local_matrix(node)
        if "mesh" in node:
            instances.append((node["mesh"], world))
        for child in node.get("children", []):
            visit(child, world, ancestors | {index})

    for root in roots:
        visit(root, np.eye(4), frozenset())
    return instances


def _local_matrix(node: dict) -> np.ndarray:
    """A node's 4x4 local transform from ``matrix`` (column-major) or translation, rotation (x, y, z, w
    quaternion) and scale."""
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    x, y, z, w = np.array(node.get("rotation", [0, 0, 0, 1]), dtype=np.float64)
    n = x * x + y * y + z * z + w * w
    s = 2.0 / n if n > 0 else 0.0
    m = np.eye(4)
    m[:3, :3] = [[1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
                 [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
                 [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)]]
    m[:3, :3] *= np.array(node.get("scale", [1, 1, 1]), dtype=np.float64)
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def _primitive(gltf: dict, binary: bytes, prim: dict, world: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[np.ndarray, torch.Tensor] | None]:
    """One primitive: world-space positions (V, 3) float32, faces (F, 3) int64, linear colours or None, and
    its embedded base-colour texture as (per-corner UVs (F, 3, 2) float32, image (H, W, 3) uint8) or None."""
    mode = prim.get("mode", _TRIANGLES)
    if mode != _TRIANGLES:
        raise ValueError(f"primitive mode {mode} is not TRIANGLES ({_TRIANGLES})")
    attributes = prim["attributes"]
    if "POSITION" not in attributes:
        raise ValueError("primitive without POSITION")
    local = _accessor(gltf, binary, attributes["POSITION"], {5126}, {3})
    positions = (local.astype(np.float64) @ world[:3, :3].T + world[:3, 3]).astype(np.float32)
    if "indices" in prim:
        indices = _accessor(gltf, binary, prim["indices"], {5121, 5123, 5125}, {1}).reshape(-1)
    else:
        indices = np.arange(len(positions))
    if len(indices) % 3:
        raise ValueError(f"TRIANGLES primitive with {len(indices)} indices (not a multiple of 3)")
    faces = indices.astype(np.int64).reshape(-1, 3)
    if np.linalg.det(world[:3, :3]) < 0:  # a mirroring transform flips the winding
        faces = faces[:, [0, 2, 1]]
    colors = None
    color_key = next((k for k in ("COLOR_0", _VERTEX_COLOR) if k in attributes), None)
    if color_key is not None:
        raw = _accessor(gltf, binary, attributes[color_key], {5121, 5123, 5126}, {3, 4})[:, :3]
        colors = raw / np.iinfo(raw.dtype).max if raw.dtype.kind == "u" else raw.astype(np.float64)
        if len(colors) != len(positions):
            raise ValueError(f"{color_key} and POSITION counts differ")
    return positions, faces, colors, _primitive_texture(gltf, binary, prim, faces)


def _primitive_texture(gltf: dict, binary: bytes, prim: dict, faces: np.ndarray
                       ) -> tuple[np.ndarray, torch.Tensor] | None:
    """The primitive's material's ``baseColorTexture`` when its image is embedded (a bufferView) and the
    primitive has its TEXCOORD set: (per-corner UVs (F, 3, 2) float32, image (H, W, 3) uint8); else None."""
    if "material" not in prim:
        return None
    info = gltf["materials"][prim["material"]].get("pbrMetallicRoughness", {}).get("baseColorTexture")
    if info is None or f"TEXCOORD_{info.get('texCoord', 0)}" not in prim["attributes"]:
        return None
    image = gltf["images"][gltf["textures"][info["index"]]["source"]]
    if "bufferView" not in image:
        return None
    view = gltf["bufferViews"][image["bufferView"]]
    start = view.get("byteOffset", 0)
    if start + view["byteLength"] > len(binary):
        raise ValueError("texture image reaches past the end of the BIN chunk")
    pixels = _decode_image(binary[start:start + view["byteLength"]], f"of image {gltf['textures'][info['index']]['source']}")
    uv = _accessor(gltf, binary, prim["attributes"][f"TEXCOORD_{info.get('texCoord', 0)}"], {5126}, {2})
    return uv[faces].astype(np.float32), pixels


def _accessor(gltf: dict, binary: bytes, index: int, components: set[int], sizes: set[int]) -> np.ndarray:
    """Accessor ``index`` as a (count, size) array of its component type, honouring byte offsets and
    strides; its componentType must be in ``components`` and its number of components in ``sizes``."""
    acc = gltf["accessors"][index]
    kind, size, count = acc["componentType"], _GLTF_TYPES[acc["type"]], acc["count"]
    if kind not in components or size not in sizes:
        raise ValueError(f"accessor {index}: unsupported componentType {kind} / type {acc['type']}")
    if "sparse" in acc or "bufferView" not in acc:
        raise ValueError(f"accessor {index}: sparse or bufferView-less accessors are not supported")
    view = gltf["bufferViews"][acc["bufferView"]]
    if "uri" in gltf["buffers"][view["buffer"]]:
        raise ValueError(f"accessor {index}: external buffers are not supported")
    dtype = np.dtype(_GLTF_COMPONENTS[kind]).newbyteorder("<")
    element = dtype.itemsize * size
    stride = view.get("byteStride") or element
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    end = start + (stride * (count - 1) + element if count else 0)
    if end > view.get("byteOffset", 0) + view["byteLength"] or end > len(binary):
        raise ValueError(f"accessor {index} reaches past the end of its buffer (truncated BIN chunk?)")
    return np.ndarray((count, size), dtype, buffer=binary, offset=start, strides=(stride, dtype.itemsize)).copy()


def _split_corners(corners: np.ndarray, num_vertices: int, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One glTF vertex per face corner, the mesh's own vertices first and in order: vertex ``v`` keeps its slot with
    the UV of its first corner, every further corner gets a new slot after them (so welding on reading, in order of
    first appearance, gives the vertices back in their order).

    Args:
        corners: (3F,) vertex index of each face corner. uv: (3F, 2) each corner's UV.
    Returns:
        source (V + extra,) int64 mesh vertex of each glTF vertex, indices (3F,) int64, vertex UVs (V + extra, 2).
    """
    order = np.argsort(corners, kind="stable")
    first_corner = np.full(num_vertices, -1)
    is_first = np.zeros(len(corners), bool)
    starts = order[np.r_[True, corners[order][1:] != corners[order][:-1]]] if len(corners) else order
    is_first[starts] = True
    first_corner[corners[starts]] = starts
    extra = np.flatnonzero(~is_first)
    indices = corners.copy()
    indices[extra] = num_vertices + np.arange(len(extra))
    source = np.concatenate([np.arange(num_vertices), corners[extra]])
    vertex_uv = np.zeros((len(source), 2), uv.dtype)
    used = first_corner >= 0
    vertex_uv[:num_vertices][used] = uv[first_corner[used]]
    vertex_uv[num_vertices:] = uv[extra]
    return source, indices, vertex_uv


def _write_glb(mesh: Mesh, fh: BinaryIO) -> None:
    """One mesh, one TRIANGLES primitive: POSITION (float VEC3), COLOR_0 (linear float VEC3) when the mesh
    has colours, uint32 indices; one node in one scene. A textured mesh is split per face corner and adds
    TEXCOORD_0, a PNG image in the BIN chunk and a material using it as ``baseColorTexture``; its vertex colours
    go to ``_VERTEX_COLOR`` instead of COLOR_0 (see the module docstring)."""
    if mesh.num_vertices == 0 or mesh.num_faces == 0:
        raise ValueError("cannot write a mesh without vertices or faces as GLB")
    positions, colors, indices = _numpy(mesh.vertices), mesh.vertex_colors, _numpy(mesh.faces).reshape(-1)
    textured = mesh.texture is not None
    if textured:  # glTF attributes are per vertex: one vertex per face corner
        source, indices, corner_uv = _split_corners(indices, mesh.num_vertices, _numpy(mesh.texture.uv).reshape(-1, 2))
        positions = positions[source]
        colors = None if colors is None else colors[torch.from_numpy(source)]
    positions = np.ascontiguousarray(positions, dtype="<f4")
    arrays: list[tuple[np.ndarray | bytes, str | None, int | None]] = [(positions, "VEC3", 34962)]
    attributes = {"POSITION": 0}
    if colors is not None:
        attributes[_VERTEX_COLOR if textured else "COLOR_0"] = len(arrays)
        arrays.append((srgb_to_linear(_numpy(colors)).astype("<f4"), "VEC3", 34962))
    if textured:
        attributes["TEXCOORD_0"] = len(arrays)
        arrays.append((corner_uv.astype("<f4"), "VEC2", 34962))
    arrays.append((indices.astype("<u4"), "SCALAR", 34963))
    if textured:
        arrays.append((_png(mesh.texture.image), None, None))
    views, accessors, chunks, offset = [], [], [], 0
    for i, (array, kind, target) in enumerate(arrays):
        data = array if isinstance(array, bytes) else array.tobytes()
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
            accessors.append({"bufferView": i, "componentType": 5126 if array.dtype.kind == "f" else 5125,
                              "count": len(array), "type": kind})
        views.append(view)
        chunks.append(data + b"\0" * (-len(data) % 4))  # every view starts 4-byte aligned
        offset += len(chunks[-1])
    accessors[0].update(min=positions.min(0).tolist(), max=positions.max(0).tolist())
    primitive = {"attributes": attributes, "indices": len(accessors) - 1, "mode": _TRIANGLES}
    gltf = {"asset": {"version": "2.0", "generator": "softras"}, "scene": 0, "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}], "meshes": [{"primitives": [primitive]}],
            "buffers": [{"byteLength": offset}], "bufferViews": views, "accessors": accessors}
    if textured:
        primitive["material"] = 0
        gltf.update(
            images=[{"bufferView": len(views) - 1, "mimeType": "image/png"}],
            samplers=[{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
            textures=[{"sampler": 0, "source": 0}],
            materials=[{"name": _MATERIAL, "pbrMetallicRoughness": {
                "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.8}}],
        )
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    fh.write(struct.pack("<4sII", _GLB_MAGIC, 2, 12 + 8 + len(text) + 8 + offset))
    fh.write(struct.pack("<II", len(text), _GLB_JSON) + text)
    fh.write(struct.pack("<II", offset, _GLB_BIN))
    for chunk in chunks:
        fh.write(chunk)


_FORMATS = {".obj": (_read_obj, _write_obj), ".ply": (_read_ply, _write_ply), ".glb": (_read_glb, _write_glb)}
