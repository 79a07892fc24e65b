"""softras: the Soft Rasterizer (Liu et al., ICCV 2019) in PyTorch. Never imports bpy.

Top-level names are imported lazily, so numpy-only modules (``softras.colorspace``, ``softras.fileio``) can be
used where torch is not installed yet (the Blender add-on before its dependencies are set up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Camera", "Mesh", "icosphere", "Reconstructor"]
__version__ = "0.1.0"

_LAZY = {"Camera": "softras.camera", "Mesh": "softras.mesh", "icosphere": "softras.mesh", "Reconstructor": "softras.reconstruct"}

if TYPE_CHECKING:
    from softras.camera import Camera
    from softras.mesh import Mesh, icosphere
    from softras.reconstruct import Reconstructor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'softras' has no attribute {name!r}")
