"""scripts/research/representation_ceilings.py: the retrieval oracle, retrieval by the generator's prediction, and what a
template can represent."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from softras.data import Shapes, ViewSet
from softras.evaluate import evaluation_views

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "research"))
import compare_weights  # noqa: E402
import representation_ceilings as ceilings  # noqa: E402


def _packed(grid: torch.Tensor) -> np.ndarray:
    return np.packbits(grid.numpy().ravel())


def test_the_oracle_finds_a_shape_or_its_mirror_image():
    left = torch.zeros(32, 32, 32, dtype=torch.bool)
    left[2:12, 5:20, 8:30] = True  # on the -x side only: its mirror image is another grid
    ball = torch.zeros(32, 32, 32, dtype=torch.bool)
    ball[10:22, 10:22, 10:22] = True
    shapes = SimpleNamespace(voxels_shell=np.stack([_packed(left), _packed(ball), _packed(left.flip(0))]))
    candidates = ceilings.candidate_grids(shapes, np.array([0, 1]))
    assert candidates.shape == (4, 32**3)
    assert ceilings.retrieval_ious(shapes, np.array([2]), np.array([0, 1])) == pytest.approx([1.0])  # via the mirror
    assert ceilings.retrieval_ious(shapes, np.array([2]), np.array([1]))[0] < 0.2
    iou, index = ceilings.best_matches(candidates[[1]], candidates)
    assert float(iou[0]) == 1.0 and int(index[0]) == 1


def test_the_generator_and_the_shape_its_prediction_retrieves(tiny_data, tiny_weights):
    shapes_path, views_path = tiny_data
    shapes = Shapes.load(shapes_path)
    train = np.array([0, 2, 3, 4])
    categories, generated, retrieved = ceilings.generator_and_retrieval_ious(shapes, str(tiny_weights), str(views_path),
                                                                            2, train)
    views = ViewSet(views_path, "val")
    models, view_ids = evaluation_views(views, 2, [30.0])
    assert list(categories) == [str(views.category[m]) for m in models.tolist()]
    # the generator's figures are compare_weights' (the same selection through the intake)
    assert generated == pytest.approx(compare_weights.view_ious(str(tiny_weights), views, shapes, models, view_ids))
    # each retrieved shape is a training shape or its mirror: its IoU with the truth is one of theirs
    truths = [ceilings.unpack_voxels(shapes.voxels_shell[views.model_index[m]]).reshape(-1).float() for m in models.tolist()]
    candidates = ceilings.candidate_grids(shapes, train)
    for truth, score in zip(truths, retrieved):
        possible = ceilings.best_matches(candidates, truth[None])[0]  # each candidate against this truth
        assert torch.isclose(possible, torch.tensor(float(score))).any()


def test_the_template_fit_represents_a_box(tiny_data):
    shapes = Shapes.load(tiny_data[0])
    torch.manual_seed(0)
    coarse, fine = ceilings.template_ious(shapes, 0, steps=60)  # the unit cube
    assert coarse > 0.8 and fine > 0.8
