"""Choosing views: input elevations, mirrored shapes, evaluation restricted to some elevations."""

import json

import numpy as np
import pytest
import torch

from softras.camera import Camera
from softras.data import Shapes, ViewSet, render_views, sample_two_views, save_views
from softras.evaluate import evaluate
from softras.model import Generator, GeneratorConfig
from softras.raster import RasterSettings, render_silhouette
from softras.train import train

from conftest import TINY_MODEL
from test_generator import tiny_config


@pytest.fixture(scope="module")
def two_elevations(tiny_data, tmp_path_factory):
    """The tiny shapes at elevations 0 and 30 (4 azimuths each), and the same views at 30 only."""
    shapes_path, _ = tiny_data
    shapes = Shapes.load(shapes_path)
    azimuths = np.tile(np.arange(0, 360, 90, dtype=np.float32), 2)
    elevations = np.repeat(np.array([0.0, 30.0], np.float32), 4)
    index = np.arange(len(shapes))
    images = render_views(shapes, index, elevations, azimuths, size=32)
    root = tmp_path_factory.mktemp("views")
    common = dict(model_index=index, category=shapes.category, model_id=shapes.model_id,
                  split=np.array(["train", "val", "train", "train", "train", "val"]), distance=np.float32(2.732),
                  fov=np.float32(30.0))
    both = save_views(root / "both.npz", images=images, elevations=elevations, azimuths=azimuths, **common)
    e30 = save_views(root / "e30.npz", images=images[:, 4:], elevations=elevations[4:], azimuths=azimuths[4:], **common)
    return shapes_path, both, e30


def test_views_at_selects_elevations(two_elevations):
    _, both, _ = two_elevations
    views = ViewSet(both, None)
    assert views.views_at([30]).tolist() == [4, 5, 6, 7]
    assert views.views_at([0, 30]).tolist() == list(range(8))
    assert views.views_at(None).tolist() == list(range(8))
    with pytest.raises(ValueError, match=r"no views at elevations \[45\].*\[0\.0, 30\.0\]"):
        views.views_at([45])


def test_input_views_come_from_the_chosen_elevation(two_elevations):
    _, both, _ = two_elevations
    views = ViewSet(both, None)
    batch = sample_two_views(views, 200, torch.Generator().manual_seed(0), views.image_size, views.views_at([30]))
    assert torch.allclose(batch.cameras_a.eye[:, 1], torch.full((200,), 2.732 * np.sin(np.radians(30))), atol=1e-5)
    heights = batch.cameras_b.eye[:, 1]
    assert (heights.abs() < 1e-5).any() and (heights > 1).any()  # supervising views at both elevations
    assert not torch.equal(batch.images_a, batch.images_b)


def test_a_flipped_view_shows_the_mirrored_shape():
    """The premise of mirroring: view of mesh at azimuth a, flipped = view of the x-mirrored mesh at -a."""
    vertices = torch.tensor([[-0.4, -0.3, -0.2], [0.45, -0.35, 0.1], [0.0, 0.4, -0.1], [0.2, 0.1, 0.45]])
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3]])
    settings = RasterSettings(48, sigma=1e-5)
    for azimuth in (20.0, 135.0, 290.0):
        view = render_silhouette(vertices[None], faces, Camera.from_angles(2.732, 30.0, azimuth), settings)
        mirrored = render_silhouette((vertices * torch.tensor([-1.0, 1.0, 1.0]))[None], faces,
                                     Camera.from_angles(2.732, 30.0, -azimuth), settings)
        assert view.sum() > 50 and not torch.allclose(view, view.flip(-1), atol=0.1)  # not symmetric in the image
        assert torch.allclose(view.flip(-1), mirrored, atol=1e-4)


def test_mirrored_samples_flip_images_and_negate_azimuths(two_elevations):
    _, both, _ = two_elevations
    views = ViewSet(both, None)
    plain = sample_two_views(views, 64, torch.Generator().manual_seed(3), views.image_size)
    mirrored = sample_two_views(views, 64, torch.Generator().manual_seed(3), views.image_size, mirror=True)
    assert torch.equal(plain.models, mirrored.models)  # same draws, then the flips
    assert not plain.mirrored.any()
    flipped = mirrored.mirrored
    assert 10 < int(flipped.sum()) < 54
    same = ~flipped
    assert torch.equal(mirrored.images_a[same], plain.images_a[same])
    assert torch.equal(mirrored.images_a[flipped], plain.images_a[flipped].flip(-1))
    assert torch.equal(mirrored.images_b[flipped], plain.images_b[flipped].flip(-1))
    assert torch.equal(mirrored.inputs[same], plain.inputs[same])
    # the intake frames the flipped picture anew: the mirror image of the plain input, up to the crop's rounding
    alpha_m, alpha_p = mirrored.inputs[flipped, 3], plain.inputs[flipped, 3].flip(-1)
    columns = torch.arange(alpha_m.shape[-1], dtype=torch.float32)
    centre = lambda a: (a.sum(1) * columns).sum(-1) / a.sum((1, 2))  # noqa: E731
    assert torch.allclose(centre(alpha_m), centre(alpha_p), atol=1.5)  # the crop box is whole pixels: its rounding, mirrored
    assert torch.allclose(alpha_m.sum((1, 2)), alpha_p.sum((1, 2)), rtol=0.05)
    for a, b in ((mirrored.cameras_a, plain.cameras_a), (mirrored.cameras_b, plain.cameras_b)):
        mirror = torch.tensor([-1.0, 1.0, 1.0])
        assert torch.allclose(a.eye[flipped], b.eye[flipped] * mirror, atol=1e-5)


def test_evaluation_at_one_elevation_matches_a_file_with_only_those_views(two_elevations):
    shapes_path, both, e30 = two_elevations
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(**TINY_MODEL))
    shapes = Shapes.load(shapes_path)
    chosen = evaluate(model, ViewSet(both, "val"), shapes, views_per_model=2, elevations=[30])
    only = evaluate(model, ViewSet(e30, "val"), shapes, views_per_model=2)
    assert chosen.voxel_iou == only.voxel_iou and chosen.silhouette_iou == only.silhouette_iou


def test_training_with_input_elevations_and_mirror(two_elevations, tmp_path):
    shapes_path, both, _ = two_elevations
    cfg = tiny_config((shapes_path, both), tmp_path, steps=2, input_elevations=[30], mirror=True)
    train(cfg, log=lambda m: None)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["input_elevations"] == [30]
    with pytest.raises(ValueError, match="no views at elevations"):
        train(tiny_config((shapes_path, both), tmp_path / "other", steps=1, input_elevations=[10]), log=lambda m: None)


def test_validation_judges_its_own_elevations(two_elevations, tmp_path):
    shapes_path, both, _ = two_elevations
    shapes = Shapes.load(shapes_path)
    records = {}
    for e in (0.0, 30.0):
        out = tmp_path / str(e)
        cfg = tiny_config((shapes_path, both), out, steps=1, validate_every=1, input_elevations=[0, 30],
                          validate_elevations=[e])
        train(cfg, log=lambda m: None)
        records[e] = json.loads((out / "validation.jsonl").read_text())
        saved = torch.load(out / "checkpoint.pt", weights_only=True)
        assert saved["runs"][-1]["validate_elevations"] == [e]  # the ledger (and so the model card) says so
        model = Generator(GeneratorConfig(**TINY_MODEL))
        model.load_state_dict(saved["model"])
        expected = evaluate(model, ViewSet(both, "val"), shapes, views_per_model=cfg.validate_views, elevations=[e])
        assert records[e]["voxel_iou"] == expected.voxel_iou and records[e]["silhouette_iou"] == expected.silhouette_iou
    assert records[0.0]["silhouette_iou"] != records[30.0]["silhouette_iou"]  # the two runs trained alike


def test_category_balance_draws_categories_equally_often(tiny_data):
    _, views_path = tiny_data
    views = ViewSet(views_path, "train")  # 3 boxes and 1 ball
    assert views.model_weights(0.0).tolist() == [1.0] * 4
    g = torch.Generator().manual_seed(0)
    uniform = sample_two_views(views, 4000, g, views.image_size).models
    balanced = sample_two_views(views, 4000, g, views.image_size, model_weights=views.model_weights(1.0)).models
    is_ball = torch.from_numpy(views.category == "ball")
    assert abs(float(is_ball[uniform].float().mean()) - 0.25) < 0.03
    assert abs(float(is_ball[balanced].float().mean()) - 0.5) < 0.03
    with pytest.raises(ValueError, match="category_balance"):
        views.model_weights(1.5)


def test_export_best_keeps_better_weights(tiny_data, tmp_path):
    from softras.model import load_weights, save_weights

    export = tmp_path / "w.pt"
    for claimed, replaced in ((2.0, False), (-1.0, True)):
        cfg = tiny_config(tiny_data, tmp_path / str(claimed), steps=2, validate_every=2, export=str(export),
                          export_best=True, category_balance=0.5)
        protocol = {"input": "intake", "views": cfg.views, "views_per_model": cfg.validate_views, "elevations": None}
        save_weights(Generator(GeneratorConfig(**TINY_MODEL)), export,
                     metadata={"validation": {"mean_voxel_iou": claimed}, "validation_protocol": protocol})
        messages = []
        train(cfg, log=messages.append)
        metadata = load_weights(export)[1]
        assert (metadata.get("step") == 2) is replaced
        assert any("does not beat 2.0000" in m for m in messages) is not replaced
        assert metadata["validation_protocol"] == protocol


def test_an_unreadable_export_is_never_replaced_silently(tiny_data, tmp_path):
    """A run with export_best refuses to start over an export file it cannot read; where the file cannot be read at
    a validation (damaged during the run, or handed to validate_and_export), it is kept and the log says why."""
    from softras.train import validate_and_export

    export = tmp_path / "w.pt"
    export.write_bytes(b"not a weights file")
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, validate_every=2, export=str(export), export_best=True)
    with pytest.raises(ValueError, match=r"existing export .*w\.pt cannot be read .*move it away"):
        train(cfg)
    assert export.read_bytes() == b"not a weights file" and not (tmp_path / "run" / "checkpoint.pt").exists()

    messages = []
    (tmp_path / "run").mkdir(exist_ok=True)
    validate_and_export(Generator(GeneratorConfig(**TINY_MODEL)), cfg, 2, [], messages.append)
    assert export.read_bytes() == b"not a weights file"
    assert any(m.startswith(f"not exported: the existing export {export} cannot be compared with step 2 (")
               and "move it away" in m for m in messages), messages


def test_every_export_says_why_in_the_log(tiny_data, tmp_path):
    """Exported without export_best, into an empty place, or beating the export: each export logs its reason. An
    export whose stored figure is unusable (the same protocol, no figure) is measured anew, not replaced blindly."""
    from softras.model import load_weights, save_weights

    export = tmp_path / "w.pt"
    for best, reason in ((False, "export_best is off, every validation exports"), (True, "no export there yet")):
        export.unlink(missing_ok=True)
        cfg = tiny_config(tiny_data, tmp_path / f"run_{best}", steps=2, validate_every=2, export=str(export),
                          export_best=best)
        messages = []
        train(cfg, log=messages.append)
        assert [m for m in messages if m.startswith("exported")] == [f"exported step 2 to {export}: {reason}"]
    protocol = load_weights(export)[1]["validation_protocol"]
    save_weights(Generator(GeneratorConfig(**TINY_MODEL)), export, metadata={"validation_protocol": protocol})
    cfg = tiny_config(tiny_data, tmp_path / "run_again", steps=2, validate_every=2, export=str(export), export_best=True)
    messages = []
    train(cfg, log=messages.append)
    verdicts = [m for m in messages if m.startswith("exported") or "does not beat" in m]
    assert len(verdicts) == 1 and ("beats" in verdicts[0] or "does not beat" in verdicts[0]), messages


def test_export_best_measures_an_export_validated_otherwise_anew(tiny_data, tmp_path):
    """An export whose figure came from another protocol (the direct path, another views file) is validated again
    through this run's protocol before it is compared: its stored figure is not trusted."""
    from softras.model import load_weights, save_weights

    export = tmp_path / "w.pt"
    save_weights(Generator(GeneratorConfig(**TINY_MODEL)), export, metadata={"validation": {"mean_voxel_iou": 2.0}})
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, validate_every=2, export=str(export), export_best=True)
    messages = []
    train(cfg, log=messages.append)
    verdict = [m for m in messages if "does not beat" in m]
    assert load_weights(export)[1].get("step") == 2 or (verdict and "does not beat 2.0000" not in verdict[0])
