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

import pytest
import torch

from softras.model import Generator, GeneratorConfig, save_weights

ROOT = Path(__file__).resolve().parents[1]
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
    addon_modules = {p.name for p in (ROOT / "softras_blender").glob("*.py")} - {"render.py", "batch.py"}
    assert addon_modules <= names and "__init__.py" in names
    assert not names & {"render.py", "batch.py"}
    engine_files = {f"softras/{p.relative_to(ROOT / 'engine' / 'softras').as_posix()}"
                    for p in (ROOT / "engine" / "softras").rglob("*.py")}
    assert engine_files <= names
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
