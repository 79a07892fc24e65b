"""Views from varied cameras and lights (datagen/varied_views.py): per-view cameras in views files, lights in the
engine's renders, and training that draws a share of its batches from such views."""

from pathlib import Path

import numpy as np
import pytest
import torch

from softras.data import Shapes, ViewSet, render_views, save_views
from softras.raster import RasterSettings, render_silhouette
from softras.train import _MixedSampler, train

from test_generator import tiny_config

from datagen.varied_views import random_lights, varied_cameras

SPLIT = np.array(["train", "val", "train", "train", "train", "val"])  # as the tiny views file's


def _save(path, shapes: Shapes, cameras: dict, split=SPLIT, lights=None) -> Path:
    index = np.arange(len(shapes))
    images = render_views(shapes, index, cameras["elevations"], cameras["azimuths"], size=32,
                          distance=cameras["distance"], fov=cameras["fov"], lights=lights)
    return save_views(path, images=images, **cameras, model_index=index, category=shapes.category,
                      model_id=shapes.model_id, split=split)


@pytest.fixture(scope="module")
def varied(tiny_data, tmp_path_factory):
    """(shapes path, varied views path): 6 random cameras and a random light per render."""
    shapes_path, _ = tiny_data
    shapes = Shapes.load(shapes_path)
    rng = np.random.default_rng(3)
    cameras = varied_cameras(6, (0.0, 50.0), (2.2, 6.0), (0.78, 0.95), rng)
    lights = random_lights((len(shapes), 6), (0.45, 0.85), rng)
    return shapes_path, _save(tmp_path_factory.mktemp("varied") / "varied.npz", shapes, cameras, lights=lights)


def test_per_view_cameras_are_read_back_and_match_the_renders(varied):
    shapes_path, path = varied
    views = ViewSet(path, None)
    with np.load(path) as z:
        assert torch.equal(views.distances, torch.from_numpy(z["distance"]))
        assert torch.equal(views.fovs, torch.from_numpy(z["fov"]))
    assert len(set(views.distances.tolist())) == 6  # one camera per view, not one for the file
    shapes = Shapes.load(shapes_path)
    mesh, _ = shapes.mesh(0)
    ids = torch.arange(views.num_views)
    cameras = views.cameras(ids)
    rendered = render_silhouette(mesh.vertices.expand(len(ids), -1, -1), mesh.faces, cameras, RasterSettings(32, sigma=1e-6))
    stored = views.images_chw(torch.zeros(len(ids), dtype=torch.long), ids)[:, 3]
    intersection = torch.minimum(rendered, stored).sum((1, 2))
    union = torch.maximum(rendered, stored).sum((1, 2))
    assert (intersection / union).min() > 0.9  # each view's own distance and field of view


def test_scalar_camera_files_still_read_as_one_camera_for_all_views(tiny_data):
    views = ViewSet(tiny_data[1], None)
    assert views.distances.shape == (views.num_views,) and torch.allclose(views.distances, torch.tensor(2.732))
    assert torch.allclose(views.fovs, torch.tensor(30.0))


def test_lights_change_the_shading_but_not_the_silhouette(tiny_data):
    shapes = Shapes.load(tiny_data[0])
    el, az = [20.0], [30.0]
    low = render_views(shapes, [0], el, az, size=32, lights=np.array([[[0.0, 1.0, 0.0, 0.4]]]))
    side = render_views(shapes, [0], el, az, size=32, lights=np.array([[[1.0, 0.2, 0.0, 0.4]]]))
    assert np.array_equal(low[..., 3], side[..., 3])
    assert np.abs(low[..., :3].astype(int) - side[..., :3]).max() > 20
    with pytest.raises(ValueError, match="lights must have shape"):
        render_views(shapes, [0, 1], el, az, size=32, lights=np.zeros((1, 1, 4)))


def test_varied_cameras_keep_their_ranges():
    rng = np.random.default_rng(0)
    cams = varied_cameras(500, (0.0, 50.0), (2.2, 6.0), (0.78, 0.95), rng)
    half_width = cams["distance"] * np.tan(np.radians(cams["fov"] / 2))
    assert cams["elevations"].min() >= 0 and cams["elevations"].max() <= 50
    assert cams["distance"].min() >= 2.2 and cams["distance"].max() <= 6.0
    assert half_width.min() >= 0.78 - 1e-5 and half_width.max() <= 0.95 + 1e-5
    lights = random_lights((10, 50), (0.45, 0.85), rng)
    assert np.allclose(np.linalg.norm(lights[..., :3], axis=-1), 1, atol=1e-5)
    assert (lights[..., 1] > np.sin(np.radians(9.9))).all() and lights[..., 3].min() >= 0.45


def test_mixed_sampler_draws_its_share_deterministically():
    def mixed(share):
        return _MixedSampler(lambda s: "standard", lambda s: "varied", share, seed=0, rank=0)

    assert {mixed(0.0)(s) for s in range(50)} == {"standard"}
    assert {mixed(1.0)(s) for s in range(50)} == {"varied"}
    drawn = [mixed(0.3)(s) for s in range(1000)]
    assert 0.25 < drawn.count("varied") / 1000 < 0.35
    assert drawn == [mixed(0.3)(s) for s in range(1000)]


def test_training_takes_batches_from_varied_views(tiny_data, varied, tmp_path):
    _, path = varied
    cfg = tiny_config(tiny_data, tmp_path, steps=2, varied_views=str(path), varied_share=1.0, mirror=True)
    train(cfg, log=lambda m: None)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["runs"][-1]["varied_views"] == str(path) and saved["runs"][-1]["varied_share"] == 1.0


def test_varied_views_must_keep_the_validation_models_out(tiny_data, tmp_path):
    shapes = Shapes.load(tiny_data[0])
    cameras = varied_cameras(3, (0.0, 50.0), (2.2, 6.0), (0.78, 0.95), np.random.default_rng(1))
    leaky = _save(tmp_path / "leaky.npz", shapes, cameras, split=np.full(len(shapes), "train"))
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=1, varied_views=str(leaky), varied_share=0.5)
    with pytest.raises(ValueError, match="trains on 2 models that .* validates on"):
        train(cfg, log=lambda m: None)
    with pytest.raises(ValueError, match="varied_share"):
        tiny_config(tiny_data, tmp_path / "run", varied_share=0.5)


def test_eval_scores_other_cameras_and_the_model_card_reports_them(tiny_data, tiny_weights, varied, capsys):
    import importlib.util
    import json

    from softras.cli import main
    from softras.evaluate import evaluate
    from softras.model import load_weights

    shapes_path, views_path = tiny_data
    _, varied_path = varied
    assert main(["eval", "--weights", str(tiny_weights), "--data", str(shapes_path), "--views", str(views_path),
                 "--views-per-model", "2", "--camera-views", str(varied_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model, _ = load_weights(tiny_weights)
    expected = evaluate(model, ViewSet(varied_path, "val"), Shapes.load(shapes_path), views_per_model=2)
    assert result["other_cameras"]["views"] == str(varied_path)
    cameras = ViewSet(varied_path, None)
    assert result["other_cameras"]["elevations"] == pytest.approx([float(cameras.elevations.min()), float(cameras.elevations.max())])
    assert result["other_cameras"]["distances"] == pytest.approx([float(cameras.distances.min()), float(cameras.distances.max())])
    assert result["other_cameras"]["mean_voxel_iou"] == pytest.approx(expected.mean_voxel_iou)
    spec = importlib.util.spec_from_file_location("model_card", Path(__file__).parents[1] / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "\n".join(module.evaluation(result, "softras eval ..."))
    assert f"| other cameras and lights (`{varied_path}`: " in text and f"**{expected.mean_voxel_iou:.4f}**" in text
    assert f"elevation {cameras.elevations.min():.0f}-{cameras.elevations.max():.0f} degrees" in text
