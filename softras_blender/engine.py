"""Access to the ``softras`` engine from inside Blender: import it lazily and keep one loaded generator.

Import strategy
---------------
The built extension ships the engine as a folder ``softras/`` beside this add-on's ``__init__.py`` (see
``scripts/build_extension.py``). The engine uses absolute imports (``from softras.camera import ...``), so it must
live under the top-level module name ``softras``. :func:`load` therefore imports the vendored folder *as*
``softras`` with :mod:`importlib` (one ``sys.modules`` entry; nothing is added to ``sys.path``, so the add-on's own
modules such as ``ui`` or ``scene`` never become importable top-level names). When there is no vendored copy
(running the add-on from the repository as ``softras_blender``), the installed ``softras`` package is imported.

Nothing here runs at import time: the add-on registers without torch, and the engine (and torch) are imported the
first time an operator needs them, normally in a worker thread. This module never imports bpy.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["VENDORED", "load", "unload", "resolve_device", "reconstructor"]

VENDORED = Path(__file__).resolve().parent / "softras"
"""Where the extension build puts the engine package."""

_lock = threading.RLock()
_reconstructors: dict[tuple[str, int, str], Any] = {}


def load() -> ModuleType:
    """The ``softras`` engine module, imported on first use (the vendored copy if present, else the installed one).

    Raises:
        ImportError: the engine or one of its dependencies (torch, Pillow) cannot be imported.
    """
    with _lock:
        loaded = sys.modules.get("softras")
        if loaded is not None:
            return loaded
        init = VENDORED / "__init__.py"
        if not init.is_file():
            return importlib.import_module("softras")
        spec = importlib.util.spec_from_file_location("softras", init, submodule_search_locations=[str(VENDORED)])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import the engine from {VENDORED}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["softras"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            _forget_vendored()
            raise
        return module


def unload() -> None:
    """Drop the cached generator and, if the engine was imported from the vendored folder, its modules, so that a
    re-enabled or upgraded extension imports its own copy again. An engine installed elsewhere is left alone
    (torch itself cannot be unloaded from a running interpreter)."""
    with _lock:
        _reconstructors.clear()
        _forget_vendored()


def _forget_vendored() -> None:
    root = str(VENDORED)
    for name in [n for n in sys.modules if n == "softras" or n.startswith("softras.")]:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(root):
            del sys.modules[name]


def resolve_device(device: str) -> str:
    """Torch device name for ``device`` in {'AUTO', 'CPU', 'CUDA'}: AUTO is 'cuda' when CUDA is available."""
    load()
    import torch

    if device == "AUTO":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "CUDA" and not torch.cuda.is_available():
        raise ValueError("device CUDA was chosen but this PyTorch build sees no CUDA GPU; choose Auto or CPU")
    return device.lower()


def reconstructor(weights: str | None, device: str) -> Any:
    """A :class:`softras.reconstruct.Reconstructor` for ``weights`` (None: the engine's default, which honours
    ``$SOFTRAS_WEIGHTS`` and else the shipped ``models/softras_generator.pt``) on ``device`` ('AUTO', 'CPU',
    'CUDA'). The last one loaded is kept; it is reloaded when the path, the file's modification time or the
    device changes.

    Raises:
        FileNotFoundError: no weights file. softras.model.WeightsError: the file is corrupt or incompatible.
    """
    load()
    from softras.reconstruct import Reconstructor, default_weights_path

    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"generator weights not found: {path}; set the weights file in the add-on preferences"
        )
    torch_device = resolve_device(device)
    key = (str(path.resolve()), path.stat().st_mtime_ns, torch_device)
    with _lock:
        if key not in _reconstructors:
            _reconstructors.clear()  # one generator in memory at a time
            _reconstructors[key] = Reconstructor(path, torch_device)
        return _reconstructors[key]
