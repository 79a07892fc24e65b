"""scripts/research/visual_hull_iou.py: the ceiling that silhouettes from some elevations put on a generator."""

import sys
from pathlib import Path

from softras.data import Shapes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "research"))
from visual_hull_iou import hull_ious  # noqa: E402


def test_side_views_carve_under_a_flat_box(tiny_data):
    shapes = Shapes.load(tiny_data[0])
    from_above, with_side = hull_ious(shapes, 2, [[30.0], [0.0, 30.0]])  # a 1 x 0.3 x 0.7 box
    assert with_side > 0.85 and from_above < with_side - 0.2
    cube, = hull_ious(shapes, 0, [[30.0]])
    assert cube > 0.95
