"""One image path: training inputs are the intake's output; augmentation; the robustness benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from softras import augment
from softras.augment import AugmentSettings, random_picture
from softras.data import Shapes, ViewSet, sample_two_views, save_views
from softras.evaluate import evaluate, evaluate_robustness, format_robustness
from softras.inputs import InputSettings, generator_input, generator_inputs
from softras.intake import IntakeSettings, load_image
from softras.model import load_weights


def _alpha_box(picture: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(picture[..., 3] > 127)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_training_inputs_are_what_the_intake_makes_of_the_saved_picture(tiny_data, tmp_path):
    """The pin between training and the product: a view sampled for training equals `softras reconstruct`'s
    intake of the same render saved as a PNG file."""
    _, views_path = tiny_data
    with np.load(views_path) as z:
        arrays = dict(z)
    arrays["images"] = np.repeat(arrays["images"][:, :1], arrays["images"].shape[1], axis=1)  # every view = view 0
    views = ViewSet(save_views(tmp_path / "same.npz", **arrays), None)
    batch = sample_two_views(views, 12, torch.Generator().manual_seed(0), 32)
    for model, given in zip(batch.models.tolist(), batch.inputs):
        path = tmp_path / f"{model}.png"
        Image.fromarray(views.pictures(torch.tensor([model]), torch.tensor([0]))[0]).save(path)
        assert torch.equal(given, _intake_of(path, 32))


def _intake_of(path, size: int) -> torch.Tensor:
    return load_image(path, settings=IntakeSettings(size=size)).rgba


def test_renders_at_a_higher_resolution_supervise_at_the_model_size(tiny_data):
    _, views_path = tiny_data
    views = ViewSet(views_path, None)
    m, v = torch.tensor([0, 4]), torch.tensor([1, 2])
    full, small = views.images_chw(m, v), views.images_chw(m, v, 16)
    assert small.shape == (2, 4, 16, 16) and torch.equal(views.images_chw(m, v, 32), full)
    assert torch.allclose(small[:, 3].mean((1, 2)), full[:, 3].mean((1, 2)), atol=0.01)  # area kept
    colour = small[:, :3][small[:, 3:].expand(-1, 3, -1, -1) > 0.05]
    assert colour.min() > 0.2  # un-premultiplied: no dark fringe from the transparent background


def test_framing_jitter_changes_size_and_position_within_its_bounds(tiny_data):
    _, views_path = tiny_data
    pictures = ViewSet(views_path, None).pictures(torch.zeros(40, dtype=torch.long), torch.zeros(40, dtype=torch.long))
    plain, changes, fallbacks = generator_inputs(pictures, 32)
    assert changes == [None] * 40 and fallbacks == 0
    assert torch.equal(plain, plain[:1].expand(40, -1, -1, -1))
    jittered, _, _ = generator_inputs(pictures, 32, InputSettings(fill_jitter=0.15, offset_jitter=0.05),
                                      np.random.default_rng(0))
    widths = []
    for image in jittered:
        x0, y0, x1, y1 = _alpha_box((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        widths.append(max(x1 - x0, y1 - y0))
    reference = _alpha_box((plain[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    size = max(reference[2] - reference[0], reference[3] - reference[1])
    assert len(set(widths)) > 2  # the size varies ...
    assert min(widths) >= size * np.exp(-0.15) - 2 and max(widths) <= size * np.exp(0.15) + 2  # ... within the bound
    again, _, _ = generator_inputs(pictures, 32, InputSettings(fill_jitter=0.15, offset_jitter=0.05),
                                   np.random.default_rng(0))
    assert torch.equal(jittered, again)  # deterministic given the generator


def _render(size: int = 48) -> np.ndarray:
    """A red square on a transparent background, a blue bar beside it."""
    picture = np.zeros((size, size, 4), np.uint8)
    picture[12:36, 10:30] = (200, 30, 30, 255)
    picture[20:30, 30:40] = (30, 30, 200, 255)
    return picture


def test_perturbations_do_what_they_say():
    picture = _render()
    assert _alpha_box(augment.reframe(picture, 0.5)) == (17, 18, 32, 30)  # half the size about the centre
    assert _alpha_box(augment.reframe(picture, 1.0, (0.25, 0.0))) == (22, 12, 52 - 4, 36)
    red = picture.copy()
    red[picture[..., 3] > 0] = (200, 30, 30, 255)
    blurred = augment.blur(red, 1.5)
    edge = blurred[..., 3] > 10
    assert (blurred[..., 3] < 255).sum() > 100 and blurred[edge][:, 0].min() > 150  # no dark fringe (8-bit rounding)
    white = augment.on_background(picture)
    assert white.shape == (48, 48, 3) and (white[0, 0] == 255).all() and (white[20, 20] == (200, 30, 30)).all()
    darker = augment.recolor(picture, augment.ColorChange(0.5))
    assert (darker[20, 20, :3] == (100, 15, 15)).all() and (darker[..., 3] == picture[..., 3]).all()
    with pytest.raises(ValueError, match="no alpha"):
        augment.jpeg(picture, 50)
    compressed = augment.jpeg(white, 30)
    assert compressed.shape == white.shape and np.abs(compressed.astype(int) - white).mean() < 10
    placed = augment.place(picture, (120, 80), 96, (0.5, 0.5))
    assert placed.shape == (80, 120, 4) and _alpha_box(placed) == (32, 16, 92, 64)  # twice the size, centred at (60, 40)
    low = augment.low_resolution(picture, 0.25)
    assert low.shape == picture.shape and not np.array_equal(low, picture)
    noisy = augment.add_noise(white, 0.05, np.random.default_rng(0))
    assert 5 < np.abs(noisy.astype(int) - white).mean() < 15
    with pytest.raises(ValueError, match="uint8"):
        augment.blur(picture.astype(np.float32), 1.0)


def test_random_pictures_are_deterministic_and_the_intake_takes_them():
    picture, settings = _render(), AugmentSettings(no_alpha=0.7)
    outputs = [random_picture(picture, np.random.default_rng(seed), settings)[0] for seed in range(30)]
    again = [random_picture(picture, np.random.default_rng(seed), settings)[0] for seed in range(30)]
    assert all(np.array_equal(a, b) for a, b in zip(outputs, again))
    assert {o.shape[2] for o in outputs} == {3, 4}  # with and without alpha
    assert len({o.tobytes() for o in outputs}) == 30
    for o in outputs:
        x = generator_input(o, 32)
        assert x.shape == (4, 32, 32) and x[3].sum() > 20
    assert random_picture(picture, np.random.default_rng(0), AugmentSettings(
        reframe=0, low_resolution=0, blur=0, recolor=0, no_alpha=0, noise=0, jpeg=0)) == (picture, None)
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        AugmentSettings.from_dict({"blurr": 0.5})
    assert AugmentSettings.from_dict({"scale": [0.8, 1.2]}).scale == (0.8, 1.2)


def test_colour_targets_are_changed_as_the_input_was(tiny_data):
    """A recoloured input supervises with recoloured targets: the colour head can only show colours its input has."""
    _, views_path = tiny_data
    views = ViewSet(views_path, None)
    only_colour = InputSettings(augment=AugmentSettings(reframe=0, low_resolution=0, blur=0, recolor=1, no_alpha=0,
                                                        noise=0, jpeg=0, exposure=(0.5, 0.6)))
    plain = sample_two_views(views, 8, torch.Generator().manual_seed(3), 32)
    batch = sample_two_views(views, 8, torch.Generator().manual_seed(3), 32, inputs=only_colour)

    def mean_colour(images: torch.Tensor) -> torch.Tensor:
        alpha = images[:, 3:]
        return (images[:, :3] * alpha).sum((2, 3)) / alpha.sum((2, 3))

    assert torch.equal(batch.models, plain.models) and torch.equal(batch.images_a[:, 3], plain.images_a[:, 3])
    assert (mean_colour(batch.inputs) < 0.75 * mean_colour(plain.inputs) + 0.01).all()  # the inputs are darker ...
    assert torch.allclose(mean_colour(batch.images_a), mean_colour(batch.inputs), atol=0.03)  # ... and so are the targets
    assert (mean_colour(batch.images_b) < 0.75 * mean_colour(plain.images_b) + 0.01).all()


def test_evaluation_goes_through_the_intake_and_reports_the_direct_path(tiny_data, tiny_weights, monkeypatch):
    import softras.evaluate

    shapes_path, views_path = tiny_data
    model, _ = load_weights(tiny_weights)
    views, shapes = ViewSet(views_path, None), Shapes.load(shapes_path)
    seen = []
    monkeypatch.setattr(softras.evaluate, "generator_input", lambda p, size: seen.append(p) or generator_input(p, size))
    intake = evaluate(model, views, shapes, views_per_model=2)
    assert len(seen) == 12 and all(p.shape == (32, 32, 4) for p in seen)  # every input picture went through it
    direct = evaluate(model, views, shapes, views_per_model=2, path="direct")
    assert len(seen) == 12 and intake.failures == direct.failures == 0 and intake.models == direct.models
    with pytest.raises(ValueError, match="path"):
        evaluate(model, views, shapes, views_per_model=1, path="raw")


def test_robustness_benchmark_runs_and_reports(tiny_data, tiny_weights, capsys):
    shapes_path, views_path = tiny_data
    model, _ = load_weights(tiny_weights)
    views, shapes = ViewSet(views_path, None), Shapes.load(shapes_path)
    perturbations = {"smaller": lambda p: augment.reframe(p, 0.75), "refused": lambda p: np.zeros_like(p)}
    rows = evaluate_robustness(model, views, shapes, views_per_model=1, perturbations=perturbations)
    assert [r.name for r in rows] == ["clean", "direct (diagnostic)", "smaller", "refused"]
    clean, direct, smaller, refused = rows
    assert clean.change == 0 and clean.agreement == 1 and clean.failures == 0
    assert clean.mean_voxel_iou == pytest.approx(evaluate(model, views, shapes, views_per_model=1).mean_voxel_iou)
    assert refused.failures == 6 and refused.mean_voxel_iou == 0 and refused.agreement == 0
    assert 0 < smaller.agreement <= 1 and smaller.failures == 0
    assert "smaller" in format_robustness(rows)

    from softras.cli import main

    args = ["eval", "--weights", str(tiny_weights), "--data", str(shapes_path), "--views", str(views_path),
            "--split", "all", "--views-per-model", "1", "--robustness"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "through the intake" in out and "direct" in out and "JPEG 50 on white" in out
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in result["robustness"]][:2] == ["clean", "direct (diagnostic)"]
    from softras.product_photos import photo_perturbations

    names = [r["name"] for r in result["robustness"]]  # the product-photo backdrops follow the fixed perturbations
    assert names[2:] == list(augment.PERTURBATIONS) + list(photo_perturbations(None, None))
    shadow = next(r for r in result["robustness"] if r["name"] == "white, ground shadow")
    assert shadow["failures"] < 6 and 0 < shadow["agreement"] <= 1  # (on 32 px views a shadow may reach the border)


def test_model_card_reports_the_intake_and_robustness_figures(tiny_data, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from softras.cli import main
    from softras.train import train
    from test_generator import tiny_config

    shapes_path, views_path = tiny_data
    weights = tmp_path / "w.pt"
    train(tiny_config(tiny_data, tmp_path / "run", steps=1, export=str(weights)), log=lambda m: None)
    assert main(["eval", "--weights", str(weights), "--data", str(shapes_path), "--views", str(views_path),
                 "--views-per-model", "1", "--robustness", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    spec = importlib.util.spec_from_file_location("model_card", Path(__file__).parents[1] / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.card(weights, result, "softras eval ...")
    assert "each through the intake, as a user's picture" in " ".join(text.split())
    assert f"**{result['intake']['mean_voxel_iou']:.4f}**" in text and "| JPEG 50 on white |" in text
    low, high = result["intake"]["voxel_iou_interval"]
    assert f"[{low:.4f}, {high:.4f}]" in text and low <= result["intake"]["mean_voxel_iou"] <= high
    assert "## Architecture" in text and "3 convolutions 5x5 stride 2 (8, 16, 32 channels" in text and "42-vertex icosphere" in text


def test_background_mask_agreement_script(tiny_data):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "research"))
    import background_masks
    from softras.intake import prepare_array

    _, views_path = tiny_data
    pictures = list(ViewSet(views_path, None).pictures(torch.arange(6), torch.zeros(6, dtype=torch.long)))
    clean = [prepare_array(p) for p in pictures]
    same = background_masks.agreement(clean, pictures, IntakeSettings(size=64))
    assert same == {"iou": 1.0, "iou_p10": 1.0, "precision": 1.0, "recall": 1.0, "box_move_px": 0.0}
    white = background_masks.agreement(clean, [augment.on_background(p) for p in pictures], IntakeSettings(size=64))
    assert 0.5 < white["iou"] <= 1.0 and white["box_move_px"] >= 0.0


def _breaking_every_other(calls: list[int]):
    """A stand-in for random_picture whose every other picture the intake refuses (all transparent)."""
    def perturb(picture, rng, settings):
        calls.append(len(calls))
        return (np.zeros_like(picture), None) if len(calls) % 2 == 0 else (picture, None)

    return perturb


def test_pictures_whose_augmentation_the_intake_refuses_are_counted(tiny_data, monkeypatch):
    """Such a picture goes in unaugmented (as the plain intake makes it) and is counted, by generator_inputs and in
    the training batch."""
    import softras.inputs

    _, views_path = tiny_data
    views = ViewSet(views_path, None)
    pictures = views.pictures(torch.arange(6), torch.zeros(6, dtype=torch.long))
    calls = []
    monkeypatch.setattr(softras.inputs, "random_picture", _breaking_every_other(calls))
    settings = InputSettings(augment=AugmentSettings())
    inputs, changes, fallbacks = generator_inputs(pictures, 32, settings, np.random.default_rng(0))
    assert len(calls) == 6 and fallbacks == 3 and changes == [None] * 6
    assert torch.equal(inputs, generator_inputs(pictures, 32)[0])  # every one as the plain intake makes it
    batch = sample_two_views(views, 8, torch.Generator().manual_seed(0), 32, inputs=settings)
    assert batch.augment_fallbacks == 4
    assert sample_two_views(views, 8, torch.Generator().manual_seed(0), 32).augment_fallbacks == 0


def test_training_reports_the_refused_augmentations(tiny_data, tmp_path, monkeypatch):
    """The count goes into the run's record (checkpoint and export metadata), the training log and a closing line."""
    import softras.inputs
    from softras.train import train

    from test_generator import tiny_config

    monkeypatch.setattr(softras.inputs, "random_picture", lambda picture, rng, settings: (np.zeros_like(picture), None))
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, checkpoint_every=1, export=str(tmp_path / "w.pt"),
                      augment={})
    messages = []
    checkpoint = train(cfg, log=messages.append)
    run = torch.load(checkpoint, weights_only=True)["runs"][-1]
    assert (run["inputs"], run["augment_fallbacks"]) == (8, 8)  # batches of 4, every augmentation refused
    assert load_weights(tmp_path / "w.pt")[1]["runs"][-1]["augment_fallbacks"] == 8
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["augment_fallbacks"] for line in lines] == [4, 8]
    assert "the intake refused the augmented picture of 8 of this run's 8 inputs: they went in unaugmented" in messages
