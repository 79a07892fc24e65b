"""The soft rasterizer: rasterize -> shade -> blend, plus one-call renderers."""

from softras.raster.blend import blend_colors, shade, soft_blend, soft_silhouette
from softras.raster.rasterize import Fragments, rasterize
from softras.raster.render import render_rgba, render_silhouette
from softras.raster.settings import RasterSettings
from softras.raster.zbuffer import ZBuffer, zbuffer

__all__ = ["Fragments", "RasterSettings", "rasterize", "shade", "blend_colors", "soft_blend", "soft_silhouette", "render_rgba", "render_silhouette", "ZBuffer", "zbuffer"]
