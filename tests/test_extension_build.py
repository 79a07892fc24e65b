"""scripts/build_extension.py: the zip's layout, and the zip installed, used and removed as a Blender extension.

The install runs in a fresh interpreter whose Blender user folder is a temporary directory
(``BLENDER_USER_RESOURCES``), so the real user configuration is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softras.meshio import read_mesh
from softras.model import Generator, GeneratorConfig, save_weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from build_extension import engine_modules  # noqa: E402

TINY = GeneratorConfig(image_size=32, template_level=1, conv_channels=(8, 16, 32), encoder_fc=(64, 64, 32),
                       decoder_fc=(64, 128), palette_size=4, color_hidden=16, color_sample_size=8)

INSTALL_AND_USE = r"""
import json, os, sys
import bpy  # first: it puts Blender's script modules (addon_utils) on sys.path
import addon_utils
import numpy as np

zip_path, = sys.argv[1:]
pkg = "bl_ext.user_default.softras"
out = {}
out["install"] = sorted(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                  enable_on_install=True))
out["enabled"] = pkg in bpy.context.preferences.addons and addon_utils.check(pkg)[1]
out["operator"] = bpy.ops.softras.reconstruct.get_rna_type().identifier
out["weights_pref"] = bpy.context.preferences.addons[pkg].preferences.weights_path

h, w = 40, 48
yy, xx = np.mgrid[:h, :w]
rgba = np.zeros((h, w, 4), np.float32)
rgba[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < 144] = (0.2, 0.6, 0.9, 1.0)
image = bpy.data.images.new("blob.png", w, h, alpha=True)
image.pixels.foreach_set(rgba[::-1].ravel())
bpy.context.scene.softras.image = image
out["reconstruct"] = sorted(bpy.ops.softras.reconstruct())
out["vertices"] = len(bpy.data.objects["blob"].data.vertices)
ext_dir = os.path.dirname(sys.modules[pkg].__file__)
out["engine_vendored"] = sys.modules["softras"].__file__ == os.path.join(ext_dir, "softras", "__init__.py")
out["ext_dir_on_path"] = ext_dir in sys.path

addon_utils.disable(pkg, default_set=True)
out["disabled"] = pkg not in bpy.context.preferences.addons
try:
    bpy.ops.softras.reconstruct.get_rna_type()
    out["operator_after_disable"] = True
except KeyError:
    out["operator_after_disable"] = False
out["engine_unloaded"] = "softras" not in sys.modules
repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
bpy.ops.extensions.package_uninstall(repo_directory=repo.directory, pkg_id="softras")
out["removed"] = not os.path.exists(ext_dir)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("extension")
    models = tmp / "models"
    models.mkdir()
    torch.manual_seed(0)
    save_weights(Generator(TINY), models / "softras_generator.pt")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_extension.py"), "--output-dir", str(tmp / "dist"),
         "--models-dir", str(models)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    zip_path = Path(result.stdout.strip().splitlines()[-1])
    assert zip_path == tmp / "dist" / "softras-0.1.0.zip" and zip_path.is_file()
    return zip_path


def test_zip_layout(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    manifest = tomllib.loads(zipfile.ZipFile(built_zip).read("blender_manifest.toml").decode())
    assert (manifest["id"], manifest["version"], manifest["type"]) == ("softras", "0.1.0", "add-on")
    addon_modules = {p.name for p in (ROOT / "softras_blender").glob("*.py")}
    assert addon_modules | {"batch.py", "render.py", "__init__.py"} == {n for n in names if "/" not in n and n.endswith(".py")}
    engine_files = {n for n in names if n.startswith("softras/")}
    # the engine modules that the add-on, the batch tool and the previews import, and no other
    assert {"softras/__init__.py", "softras/reconstruct.py", "softras/texture.py", "softras/meshio.py",
            "softras/refine.py", "softras/raster/zbuffer.py", "softras/colorspace.py"} <= engine_files
    assert not engine_files & {"softras/train.py", "softras/data.py", "softras/evaluate.py", "softras/cli.py"}
    assert not [n for n in engine_files if n.startswith("softras/bench/")]
    assert engine_files == {f"softras/{p.relative_to(ROOT / 'engine' / 'softras').as_posix()}" for p in engine_modules()}
    assert "models/softras_generator.pt" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(".")]


def test_install_use_and_remove_as_extension(built_zip, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SOFTRAS_WEIGHTS"}  # use the shipped models/ weights
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")
    result = subprocess.run([sys.executable, "-c", INSTALL_AND_USE, str(built_zip)], capture_output=True, text=True,
                            timeout=180, env=env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out == {
        "install": ["FINISHED"], "enabled": True, "operator": "SOFTRAS_OT_reconstruct", "weights_pref": "",
        "reconstruct": ["FINISHED"], "vertices": 42, "engine_vendored": True, "ext_dir_on_path": False,
        "disabled": True, "operator_after_disable": False, "engine_unloaded": True, "removed": True,
    }


INSTALL = r"""
import sys
import bpy

zip_path, = sys.argv[1:]
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default") == {"FINISHED"}
repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
print("EXTENSION " + repo.directory + "/softras")
"""

# What ``blender --background --factory-startup --python <extension>/batch.py -- ARGS`` does with the bpy module: run
# the file as __main__ in a fresh Blender whose add-ons are not enabled.
RUN_INSTALLED_BATCH = r"""
import json, runpy, sys
import bpy

script, *args = sys.argv[1:]
sys.argv = ["blender", "--background", "--python", script, "--", *args]
try:
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
print("RESULT " + json.dumps({"exit": code, "engine": getattr(sys.modules.get("softras"), "__file__", None),
                              "batch": [n for n in sys.modules if n.endswith(".batch")]}))
"""


def test_batch_conversion_runs_from_the_installed_extension(built_zip, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SOFTRAS_WEIGHTS"}  # the shipped models/ weights
    env.update(BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"), OMP_NUM_THREADS="1")
    installed = subprocess.run([sys.executable, "-c", INSTALL, str(built_zip)], capture_output=True, text=True,
                               timeout=180, env=env, cwd=tmp_path)
    lines = [line for line in installed.stdout.splitlines() if line.startswith("EXTENSION ")]
    assert installed.returncode == 0 and lines, installed.stdout[-3000:] + installed.stderr[-3000:]
    extension = Path(lines[-1][len("EXTENSION "):])
    assert (extension / "batch.py").is_file() and (extension / "render.py").is_file()

    yy, xx = np.mgrid[:48, :64]
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[((xx - 32) / 22) ** 2 + ((yy - 24) / 15) ** 2 <= 1] = (40, 90, 220, 255)
    (tmp_path / "images").mkdir()
    Image.fromarray(rgba).save(tmp_path / "images" / "blob.png")
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "images"), "--output", str(out), "--format", "glb", "--preview", "--device", "cpu"]
    result = subprocess.run([sys.executable, "-c", RUN_INSTALLED_BATCH, str(extension / "batch.py"), *args],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads(lines[-1][len("RESULT "):])
    assert run == {"exit": 0, "engine": str(extension / "softras" / "__init__.py"),
                   "batch": ["bl_ext.user_default.softras.batch"]}, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["status"], Path(r["output"]).name) for r in summary] == [("ok", "blob.glb")]
    assert read_mesh(out / "blob.glb").num_vertices == 42
    preview = np.asarray(Image.open(out / "blob_preview.png"))
    assert preview.shape == (160, 640, 3) and (preview[..., 2].astype(int) - preview[..., 0] > 60).sum() > 500  # blue


def test_the_batch_script_outside_an_extension_repository_says_so(built_zip, tmp_path):
    """An extension folder that Blender does not know (unzipped by hand) is refused with a message, not a traceback."""
    folder = tmp_path / "softras"
    zipfile.ZipFile(built_zip).extractall(folder)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    result = subprocess.run([sys.executable, "-c", RUN_INSTALLED_BATCH, str(folder / "batch.py"), "--input", "x",
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env,
                            cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines and json.loads(lines[-1][len("RESULT "):]) == {"exit": 2, "engine": None, "batch": []}
    assert f"{folder} is in no enabled extension repository" in result.stderr and "Traceback" not in result.stderr
