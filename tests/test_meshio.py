"""Tests of softras.meshio: round trips, hand-written files, glTF transforms and colour space, errors, atomicity."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

from softras import meshio
from softras.mesh import Mesh, icosphere
from softras.meshio import read_mesh, write_mesh


def _sphere(colors: bool) -> Mesh:
    mesh = icosphere(1)
    if colors:
        mesh.vertex_colors = torch.rand(mesh.num_vertices, 3, generator=torch.Generator().manual_seed(0))
    return mesh


def _glb(gltf: dict, binary: bytes) -> bytes:
    """Assemble a GLB file from a glTF document and its BIN chunk."""
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    return (struct.pack("<4sII", b"glTF", 2, 28 + len(text) + len(binary))
            + struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary)


def _split_glb(data: bytes) -> tuple[dict, bytes]:
    (json_len,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20:20 + json_len]), data[20 + json_len + 8:]


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb", ".OBJ"])
@pytest.mark.parametrize("colors", [True, False])
def test_round_trip(tmp_path, suffix, colors):
    mesh = _sphere(colors)
    path = write_mesh(mesh, tmp_path / f"mesh{suffix}")
    assert path.is_file() and os.listdir(tmp_path) == [f"mesh{suffix}"]
    back = read_mesh(path)
    torch.testing.assert_close(back.vertices, mesh.vertices, rtol=1e-6, atol=1e-7)
    assert torch.equal(back.faces, mesh.faces)
    if colors:
        tol = 1 / 255 if suffix == ".ply" else 1e-5
        torch.testing.assert_close(back.vertex_colors, mesh.vertex_colors, rtol=0, atol=tol)
    else:
        assert back.vertex_colors is None


def test_obj_handwritten(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("# comment\no square\nv 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n"
                    "vt 0 0\nvn 0 0 1\nusemtl red\ng group\ns off\n"
                    "f 1/1/1 2/1/1 3/1/1 4/1/1\nv 2 0 0 0.5 0.5 0.5\nf -1//1 2//1 -3\nf 5/1 4/1 1/1\n")
    mesh = read_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [4, 1, 2], [4, 3, 0]]
    assert mesh.vertices[4].tolist() == [2, 0, 0]
    assert mesh.vertex_colors[2].tolist() == [0, 0, 1]


def test_ply_ascii_with_extra_property_and_element(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text("ply\nformat ascii 1.0\ncomment extra stuff\nelement vertex 4\n"
                    "property float x\nproperty float y\nproperty double z\nproperty float confidence\n"
                    "property uchar red\nproperty uchar green\nproperty uchar blue\n"
                    "element face 2\nproperty list uchar int vertex_indices\nproperty int flags\n"
                    "element edge 1\nproperty list uint8 int32 pair\nend_header\n"
                    "0 0 0 0.9 255 0 0\n1 0 0 0.8 0 255 0\n1 1 0 0.7 0 0 255\n0 1 0.5 0.6 51 51 51\n"
                    "4 0 1 2 3 7\n3 0 2 1 8\n2 0 1\n")
    mesh = read_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 1]]
    assert mesh.vertices[3].tolist() == [0, 1, 0.5]
    torch.testing.assert_close(mesh.vertex_colors[3], torch.full((3,), 0.2))


def test_ply_binary_big_endian_ragged_faces(tmp_path):
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
              "property double z\nproperty float red\nproperty float green\nproperty float blue\n"
              "element face 2\nproperty list ushort uint vertex_indices\nelement extra 1\nproperty short s\n"
              "end_header\n").encode()
    vertices = b"".join(struct.pack(">dddfff", x, y, 0.0, 0.25, 0.5, 1.0) for x, y in
                        [(0, 0), (1, 0), (1, 1), (0, 1)])
    faces = struct.pack(">H4I", 4, 0, 1, 2, 3) + struct.pack(">H3I", 3, 3, 2, 1)
    path = tmp_path / "big.ply"
    path.write_bytes(header + vertices + faces + struct.pack(">h", -1))
    mesh = read_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 1]]
    assert mesh.vertices[2].tolist() == [1, 1, 0]
    assert mesh.vertex_colors[0].tolist() == [0.25, 0.5, 1.0]


def test_glb_stores_linear_colors(tmp_path):
    mesh = icosphere(0)
    mesh.vertex_colors = torch.full((mesh.num_vertices, 3), 0.5)
    data = write_mesh(mesh, tmp_path / "c.glb").read_bytes()
    assert len(data) % 4 == 0 and struct.unpack_from("<I", data, 8)[0] == len(data)
    gltf, binary = _split_glb(data)
    assert gltf["asset"] == {"version": "2.0", "generator": "softras"}
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim["mode"] == 4
    acc = gltf["accessors"][prim["attributes"]["COLOR_0"]]
    assert (acc["componentType"], acc["type"]) == (5126, "VEC3")
    view = gltf["bufferViews"][acc["bufferView"]]
    stored = np.frombuffer(binary, "<f4", mesh.num_vertices * 3, view.get("byteOffset", 0))
    np.testing.assert_allclose(stored, 0.21404114, atol=1e-6)
    position = gltf["accessors"][prim["attributes"]["POSITION"]]
    np.testing.assert_allclose(position["max"], mesh.vertices.max(0).values.numpy())
    torch.testing.assert_close(read_mesh(tmp_path / "c.glb").vertex_colors, mesh.vertex_colors)


def test_glb_node_transforms(tmp_path):
    mesh = icosphere(0)
    gltf, binary = _split_glb(write_mesh(mesh, tmp_path / "m.glb").read_bytes())
    quarter_turn_y = [0, 2 ** -0.5, 0, 2 ** -0.5]  # maps +x to -z
    gltf["nodes"] = [{"children": [1], "translation": [1, 2, 3]},
                     {"mesh": 0, "rotation": quarter_turn_y, "scale": [2, 2, 2]}]
    path = tmp_path / "moved.glb"
    path.write_bytes(_glb(gltf, binary))
    v = mesh.vertices
    expected = torch.stack([v[:, 2], v[:, 1], -v[:, 0]], 1) * 2 + torch.tensor([1.0, 2, 3])
    moved = read_mesh(path)
    torch.testing.assert_close(moved.vertices, expected, rtol=0, atol=1e-5)
    assert torch.equal(moved.faces, mesh.faces)


def test_glb_interleaved_non_indexed_ubyte_colors(tmp_path):
    rows = [((0, 0, 0), (255, 0, 0, 255)), ((1, 0, 0), (0, 255, 0, 255)), ((0, 1, 0), (0, 0, 255, 128))]
    binary = b"".join(struct.pack("<3f4B", *p, *c) for p, c in rows)
    gltf = {"asset": {"version": "2.0"},
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}}]}],
            "buffers": [{"byteLength": len(binary)}],
            "bufferViews": [{"buffer": 0, "byteLength": len(binary), "byteStride": 16}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
                          {"bufferView": 0, "byteOffset": 12, "componentType": 5121, "normalized": True,
                           "count": 3, "type": "VEC4"}]}
    path = tmp_path / "tri.glb"
    path.write_bytes(_glb(gltf, binary))
    mesh = read_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2]]
    assert mesh.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert mesh.vertex_colors.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.stl.*\.obj, \.ply, \.glb"):
        read_mesh(tmp_path / "m.stl")
    with pytest.raises(ValueError, match=r"\.stl"):
        write_mesh(icosphere(0), tmp_path / "m.stl")
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        read_mesh(tmp_path / "missing.obj")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_mesh(icosphere(0), tmp_path / "no_dir" / "m.obj")


@pytest.mark.parametrize("suffix", [".ply", ".glb"])
def test_truncated_files(tmp_path, suffix):
    path = write_mesh(_sphere(True), tmp_path / f"m{suffix}")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"m{suffix}: .*truncated"):
        read_mesh(path)


def test_glb_rejects_bad_magic_version_and_mode(tmp_path):
    gltf, binary = _split_glb(write_mesh(icosphere(0), tmp_path / "m.glb").read_bytes())
    path = tmp_path / "bad.glb"
    path.write_bytes(b"glTX" + _glb(gltf, binary)[4:])
    with pytest.raises(ValueError, match="magic"):
        read_mesh(path)
    data = _glb(gltf, binary)
    path.write_bytes(data[:4] + struct.pack("<I", 1) + data[8:])
    with pytest.raises(ValueError, match="version 1"):
        read_mesh(path)
    gltf["meshes"][0]["primitives"][0]["mode"] = 1
    path.write_bytes(_glb(gltf, binary))
    with pytest.raises(ValueError, match="bad.glb: primitive mode 1"):
        read_mesh(path)


def test_obj_face_index_out_of_range_names_file(tmp_path):
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match="bad.obj: .*out of range"):
        read_mesh(path)
    path.write_text("v 0 0 0\nf 1 x 2\n")
    with pytest.raises(ValueError, match="bad.obj: line 2"):
        read_mesh(path)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "mesh.obj"
    target.write_text("old content")

    def failing_writer(mesh, fh):
        fh.write(b"v 0 0 0\n")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(meshio._FORMATS, ".obj", (meshio._read_obj, failing_writer))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_mesh(icosphere(0), target)
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["mesh.obj"]


# ---------------------------------------------------------------------------------------------- textures
def _textured(level: int = 2) -> Mesh:
    from softras.mesh import Texture
    from softras.texture import template_layout

    sphere = icosphere(level, 0.4)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (32, 48, 3), dtype=torch.uint8, generator=g)
    return Mesh(sphere.vertices, sphere.faces, torch.rand(sphere.num_vertices, 3, generator=g),
                Texture(template_layout(sphere.num_faces).uv(), image))


def _same_corners(a: Mesh, b: Mesh, color_atol: float) -> None:
    """Same faces in the same order with the same corner positions, colours and UVs, and the same image."""
    assert a.num_faces == b.num_faces and a.num_vertices == b.num_vertices
    assert torch.allclose(a.vertices[a.faces], b.vertices[b.faces], atol=1e-6)
    assert torch.allclose(a.vertex_colors[a.faces], b.vertex_colors[b.faces], atol=color_atol)
    assert torch.allclose(a.texture.uv, b.texture.uv, atol=1e-6)
    assert torch.equal(a.texture.image, b.texture.image)


def test_textured_glb_round_trip_embeds_a_png_base_color_texture(tmp_path):
    mesh = _textured()
    path = write_mesh(mesh, tmp_path / "t.glb")
    gltf, binary = meshio._glb_chunks(path.read_bytes())
    primitive = gltf["meshes"][0]["primitives"][0]
    assert {"POSITION", "TEXCOORD_0", "_VERTEX_COLOR"} <= set(primitive["attributes"]) and "COLOR_0" not in primitive["attributes"]
    material = gltf["materials"][primitive["material"]]
    image = gltf["images"][gltf["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]]
    view = gltf["bufferViews"][image["bufferView"]]
    assert image["mimeType"] == "image/png" and binary[view["byteOffset"]:view["byteOffset"] + 8] == b"\x89PNG\r\n\x1a\n"
    assert all(v["byteOffset"] % 4 == 0 for v in gltf["bufferViews"])
    back = read_mesh(path)  # corners welded back into the shared vertices, in their order
    assert torch.equal(back.faces, mesh.faces) and torch.equal(back.vertices, mesh.vertices)
    _same_corners(mesh, back, 1e-5)


def test_textured_obj_writes_mtl_and_png_beside_it_and_reads_them_back(tmp_path):
    mesh = _textured()
    write_mesh(mesh, tmp_path / "t.obj")
    assert sorted(os.listdir(tmp_path)) == ["t.mtl", "t.obj", "t.png"]
    text = (tmp_path / "t.obj").read_text()
    assert "mtllib t.mtl" in text and "usemtl softras" in text and "\nf 1/" in text
    assert "map_Kd t.png" in (tmp_path / "t.mtl").read_text()
    back = read_mesh(tmp_path / "t.obj")
    assert torch.equal(back.faces, mesh.faces)
    _same_corners(mesh, back, 1e-5)


def test_an_obj_without_its_texture_files_reads_without_texture(tmp_path):
    write_mesh(_textured(), tmp_path / "t.obj")
    (tmp_path / "t.png").unlink()
    back = read_mesh(tmp_path / "t.obj")
    assert back.texture is None and back.num_faces == 320 and back.vertex_colors is not None


def test_ply_keeps_only_the_vertex_colours_of_a_textured_mesh(tmp_path):
    back = read_mesh(write_mesh(_textured(), tmp_path / "t.ply"))
    assert back.texture is None and back.vertex_colors is not None


def test_a_failed_textured_obj_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    (tmp_path / "t.obj").write_text("old obj")

    def failing(mesh, fh, mtllib=None):
        fh.write(b"v 0 0 0\n")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(meshio, "_write_obj", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_mesh(_textured(), tmp_path / "t.obj")
    assert os.listdir(tmp_path) == ["t.obj"] and (tmp_path / "t.obj").read_text() == "old obj"
