"""Build the SoftRas Blender extension zip with Blender's own extension builder.

Usage (from the repository, with the venv that has the ``bpy`` module)::

    .venv/bin/python scripts/build_extension.py [--output-dir dist] [--models-dir models]

The extension's zip has the manifest and the add-on's ``__init__.py`` at its root, so the package is assembled in a
temporary staging folder first::

    blender_manifest.toml   README.md   (LICENSE if present)
    __init__.py, batch.py, ...          <- softras_blender/*.py (the add-on, its headless batch conversion and the
                                           Cycles renderer of the batch previews)
    softras/...                         <- the modules of engine/softras that those import, directly or through
                                           each other (not training, evaluation or benchmarks; see engine_modules)
    models/*.pt                         <- --models-dir (the shipped generator weights, if any)

Then ``blender_ext.py build`` (from ``bl_pkg/cli`` inside the installed bpy package, run with this Python) writes
``<output-dir>/softras-<version>.zip``, enforcing Blender's list of valid tags like ``blender --command extension
build`` does, and ``blender_ext.py validate`` checks the zip. The last line printed is the zip's path.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine" / "softras"
_BUILDER = "scripts/addons_core/bl_pkg/cli/blender_ext.py"
_TAGS = "scripts/modules/_bpy_internal/extensions/tags.py"


def blender_resources() -> Path:
    """``bpy/<version>`` of the installed bpy module (found without importing it)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the bpy module is not installed in this Python (pip install 'bpy==4.5.*')")
    package = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(p for p in package.iterdir() if (p / _BUILDER).is_file())
    if not found:
        raise SystemExit(f"error: Blender's extension builder ({_BUILDER}) not found under {package}")
    return found[-1]


def _module_file(name: str) -> Path | None:
    """The file of engine module ``name`` (``softras`` or ``softras.a.b``), or None if there is none."""
    base = ENGINE.joinpath(*name.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _engine_imports(path: Path) -> set[str]:
    """Names of the engine's modules that the Python file ``path`` imports anywhere (at the top, in functions, or
    named as a whole string for importlib, as the engine's lazy top-level names are), with their parent packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from softras import raster
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    found = {n for n in names if re.fullmatch(r"softras(\.[A-Za-z_]\w*)*", n) and _module_file(n) is not None}
    return found | {".".join(n.split(".")[:k]) for n in found for k in range(1, n.count(".") + 1)}


def engine_modules() -> list[Path]:
    """The files of the engine that the add-on's modules (softras_blender/*.py) import, directly or through each
    other: what the extension runs. The rest of the engine (training, evaluation, benchmarks) is not shipped."""
    seen: set[str] = set()
    pending = set().union(*(_engine_imports(p) for p in sorted((ROOT / "softras_blender").glob("*.py"))))
    while pending:
        name = pending.pop()
        seen.add(name)
        pending |= _engine_imports(_module_file(name)) - seen
    return sorted(_module_file(n) for n in seen)


def stage(staging: Path, models_dir: Path) -> None:
    """Copy the package's files into ``staging`` (see the module docstring)."""
    shutil.copy2(ROOT / "blender_manifest.toml", staging)
    for name in ("README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, staging)
    for module in sorted((ROOT / "softras_blender").glob("*.py")):
        shutil.copy2(module, staging)
    for path in engine_modules():
        target = staging / "softras" / path.relative_to(ENGINE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    weights = sorted(models_dir.glob("*.pt")) if models_dir.is_dir() else []
    if not weights:
        print(f"warning: no weights (*.pt) in {models_dir}; the extension will need a weights file set in its "
              "preferences", file=sys.stderr)
    for path in weights:
        (staging / "models").mkdir(exist_ok=True)
        shutil.copy2(path, staging / "models")


def run(command: list[str]) -> None:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[1:3])} failed with exit code {result.returncode}")


def build(output_dir: Path, models_dir: Path) -> Path:
    """Build and validate the zip; returns its path."""
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    resources = blender_resources()
    builder, tags = resources / _BUILDER, resources / _TAGS
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="softras_extension_") as tmp:
        staging = Path(tmp) / manifest["id"]
        staging.mkdir()
        stage(staging, models_dir)
        tag_args = [f"--valid-tags={tags}"] if tags.is_file() else []
        run([sys.executable, str(builder), "build", "--source-dir", str(staging), "--output-dir", str(output_dir), *tag_args])
    if not zip_path.is_file():
        raise SystemExit(f"error: the builder did not write {zip_path}")
    run([sys.executable, str(builder), "validate", str(zip_path), *tag_args])
    return zip_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default: dist/)")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models",
                        help="folder whose *.pt weights are shipped in models/ (default: models/)")
    args = parser.parse_args(argv)
    print(build(args.output_dir.resolve(), args.models_dir.resolve()))


if __name__ == "__main__":
    main()
