"""datagen/stretched_shapes.py: stretched copies of the training models, never of the validation models."""


import numpy as np
import pytest

from softras.data import Shapes, split_by_model

from conftest import make_shapes_file

from datagen.stretched_shapes import make, stretch


@pytest.fixture(scope="module")
def one_category(tmp_path_factory):
    """The six test shapes in one category, so that the split holds one of them out for validation."""
    path = tmp_path_factory.mktemp("stretch") / "shapes.npz"
    make_shapes_file(path)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["category"] = np.array(["box"] * len(arrays["category"]))
    np.savez_compressed(path, **arrays)
    return path


def test_stretch_scales_each_axis_then_fits_the_unit_box():
    cube = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
    out = stretch(cube + 0.2, np.array([2.0, 1.0, 0.5]))
    assert np.allclose(out.max(0) + out.min(0), 0, atol=1e-6)
    assert np.allclose(out.max(0) - out.min(0), [1.0, 0.5, 0.25], atol=1e-6)


def test_copies_of_training_models_only(one_category):
    shapes = Shapes.load(one_category)
    split = split_by_model(shapes.category, shapes.model_id)
    held_out = set(shapes.model_id[split == "val"])
    assert len(held_out) == 1
    arrays = make(one_category, copies=2, max_stretch=1.5, seed=0)
    originals = [m.split("~")[0] for m in arrays["model_id"]]
    assert len(originals) == 2 * 5 and not held_out & set(originals)
    assert sorted(set(originals)) == sorted(set(shapes.model_id) - held_out)
    assert (arrays["category"] == "box").all() and len(set(arrays["model_id"])) == 10
    voxels, shell = np.unpackbits(arrays["voxels"], axis=1), np.unpackbits(arrays["voxels_shell"], axis=1)
    assert (shell >= voxels).all() and (shell.sum(1) > 0).all()
    offsets = arrays["vert_offsets"]
    for k in range(10):
        v = arrays["vertices"][offsets[k] : offsets[k + 1]]
        assert abs(float((v.max(0) - v.min(0)).max()) - 1) < 1e-6
    first = arrays["vertices"][offsets[0] : offsets[1]]
    second = arrays["vertices"][offsets[1] : offsets[2]]
    assert not np.allclose(np.ptp(first, 0), np.ptp(second, 0))  # two copies of a model, two proportions
    assert make(one_category, copies=2, max_stretch=1.5, seed=0)["vertices"].tobytes() == arrays["vertices"].tobytes()


def test_bad_settings_are_refused(one_category):
    with pytest.raises(ValueError, match="copies"):
        make(one_category, copies=0, max_stretch=1.5, seed=0)
    with pytest.raises(ValueError, match="max_stretch"):
        make(one_category, copies=1, max_stretch=0.5, seed=0)
