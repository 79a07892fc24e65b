"""softras: the Soft Rasterizer (Liu et al., ICCV 2019) in PyTorch. Never imports bpy."""

from softras.camera import Camera
from softras.mesh import Mesh, icosphere

__all__ = ["Camera", "Mesh", "icosphere"]
__version__ = "0.1.0"
