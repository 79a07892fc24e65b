"""The foreground network, its weights, its place in the intake (the per-picture rule, alpha and masks first),
the product-photo benchmark and the training pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from softras.data import Shapes, split_by_model
from softras.foreground import (FORMAT, ForegroundConfig, ForegroundNet, ForegroundWeightsError, load_foreground,
                                net_input, save_foreground)
from softras.intake import IntakeSettings, prepare_array
from softras.product_photos import (BACKDROPS, format_mask_benchmark, ground_shadow, mask_benchmark, product_photos,
                                    true_mask)

TINY = ForegroundConfig(widths=(4, 4, 6, 6, 8), net_size=64)


def constant_weights(path, logit: float):
    """Tiny weights whose network calls every pixel foreground (logit > 0) or background (logit < 0)."""
    torch.manual_seed(0)
    net = ForegroundNet(TINY)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(logit)
    return save_foreground(path, net, {"test": True})


def picture(background=(255, 255, 255), size=96) -> np.ndarray:
    """A dark-grey square (rows and columns 30-60) on ``background``: (size, size, 3) uint8."""
    p = np.empty((size, size, 3), np.uint8)
    p[:] = background
    p[30:60, 30:60] = 60
    return p


def test_network_output_size_parameters_and_input():
    net = ForegroundNet().eval()
    assert sum(p.numel() for p in net.parameters()) < 400_000  # about 1.2 MB of float32 weights
    x, (h, w) = net_input(np.zeros((300, 400, 3), np.uint8), 256)
    assert (h, w) == (192, 256) and x.shape == (1, 6, 192, 256)
    with torch.no_grad():
        assert net(x).shape == (1, 1, 96, 128)
    x, (h, w) = net_input(np.full((50, 70, 3), 200, np.uint8), 64)  # padded to multiples of 32 by replication
    assert (h, w) == (46, 64) and x.shape == (1, 6, 64, 64)
    assert torch.allclose(x[0, :3, 50:], x[0, :3, 45:46].expand(3, 14, 64)) and x[0, 3:].abs().max() < 1e-6


def test_weights_round_trip_and_every_check(tmp_path):
    torch.manual_seed(1)
    net = ForegroundNet(TINY).eval()
    path = save_foreground(tmp_path / "fg.pt", net, {"steps": 3})
    loaded, meta = load_foreground(path)
    x = torch.rand(1, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert meta == {"steps": 3} and loaded.cfg == TINY and not loaded.training
    with pytest.raises(FileNotFoundError):
        load_foreground(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ForegroundWeightsError, match="not a readable"):
        load_foreground(tmp_path / "junk.pt")
    payload = torch.load(path, weights_only=True)
    cases = {"not foreground weights": {**payload, "format": "softras-generator"},
             "version 99": {**payload, "version": 99},
             "bad config": {**payload, "config": {"widths": [4, 4], "net_size": 64}},
             "do not match": {**payload, "state_dict": {k: v for k, v in payload["state_dict"].items() if "head" not in k}},
             "wrong shape": {**payload, "state_dict": {**payload["state_dict"], "head.bias": torch.zeros(2)}},
             "non-finite": {**payload, "state_dict": {**payload["state_dict"], "head.bias": torch.tensor([float("nan")])}}}
    for reason, bad in cases.items():
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(ForegroundWeightsError, match=reason):
            load_foreground(tmp_path / "bad.pt")
    assert payload["format"] == FORMAT


def test_the_rule_uses_the_network_on_light_neutral_backdrops_only(tmp_path):
    everything = str(constant_weights(tmp_path / "all.pt", 20.0))  # a network that takes the whole picture
    auto = IntakeSettings(foreground_weights=everything, light_method="combined")
    border = IntakeSettings(foreground="border", foreground_weights=everything)
    for background, expected in (((255, 255, 255), "combined"), ((226, 226, 226), "combined"), ((200, 40, 40), "border"),
                                 ((30, 30, 30), "border"), ((150, 150, 150), "border")):
        result = prepare_array(picture(background), settings=auto)
        assert result.foreground_source == expected, background
        if expected == "border":  # the border estimate's result, unchanged
            assert torch.equal(result.rgba, prepare_array(picture(background), settings=border).rgba)
        else:  # the whole picture is foreground: the crop box is the picture's
            assert result.crop_box[2] - result.crop_box[0] == round(96 / IntakeSettings.fill)
    forced = prepare_array(picture((200, 40, 40)), settings=IntakeSettings(foreground="net", foreground_weights=everything))
    assert forced.foreground_source == "net"
    alone = prepare_array(picture(), settings=IntakeSettings(light_method="net", foreground_weights=everything))
    assert alone.foreground_source == "net" and alone.crop_box == forced.crop_box


def test_the_shadow_rule_takes_the_combined_mask_only_where_the_border_estimate_reaches_below_it(tmp_path, monkeypatch):
    import softras.foreground

    weights = str(constant_weights(tmp_path / "any.pt", 0.0))
    shadowed = picture()
    shadowed[60:72, 24:70] = 200  # a grey shadow under the dark square (rows 30-60): the border estimate takes it in
    square = np.zeros((96, 96), np.float32)
    square[30:60, 30:60] = 1.0  # a network that sees the square alone

    def probability(net, rgb, size=None):
        return np.asarray(Image.fromarray(square).resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR))

    monkeypatch.setattr(softras.foreground, "foreground_probability", probability)
    auto = IntakeSettings(foreground_weights=weights)  # light_method 'shadow'
    result = prepare_array(shadowed, settings=auto)
    border = prepare_array(shadowed, settings=IntakeSettings(foreground="border"))
    assert result.foreground_source == "combined" and border.foreground_source == "border"
    assert result.crop_box == prepare_array(picture(), settings=IntakeSettings(foreground="border")).crop_box  # no shadow
    assert border.crop_box[3] - border.crop_box[1] > result.crop_box[3] - result.crop_box[1]
    plain = prepare_array(picture(), settings=auto)  # no shadow: the border estimate, unchanged
    assert plain.foreground_source == "border"
    assert torch.equal(plain.rgba, prepare_array(picture(), settings=IntakeSettings(foreground="border")).rgba)


def test_combined_keeps_border_pixels_the_network_accepts_and_adds_those_it_is_sure_of(tmp_path):
    torch.manual_seed(0)
    net = ForegroundNet(TINY)
    with torch.no_grad():  # probability sigmoid(0.5) = 0.62: keeps the border estimate's pixels, adds none
        net.head.weight.zero_()
        net.head.bias.fill_(0.5)
    unsure = str(save_foreground(tmp_path / "unsure.pt", net, {}))
    combined = prepare_array(picture(), settings=IntakeSettings(foreground="combined", foreground_weights=unsure))
    border = prepare_array(picture(), settings=IntakeSettings(foreground="border"))
    assert combined.foreground_source == "combined" and torch.equal(combined.rgba, border.rgba)
    settings = IntakeSettings(foreground="combined", foreground_weights=unsure, net_keep=0.7)  # now it rejects them
    with pytest.raises(ValueError, match="network found no object"):
        prepare_array(picture(), settings=settings)
    auto = IntakeSettings(foreground_weights=unsure, net_keep=0.7)
    assert prepare_array(picture(), settings=auto).foreground_source == "border"  # 'auto': nothing left, the fallback
    with pytest.raises(ValueError, match="light_method"):
        IntakeSettings(light_method="border")


def test_a_network_finding_nothing_falls_back_to_the_border_estimate(tmp_path):
    nothing = str(constant_weights(tmp_path / "none.pt", -20.0))
    result = prepare_array(picture(), settings=IntakeSettings(foreground_weights=nothing))
    assert result.foreground_source == "border"
    assert torch.equal(result.rgba, prepare_array(picture(), settings=IntakeSettings(foreground="border")).rgba)
    with pytest.raises(ValueError, match="network found no object"):
        prepare_array(picture(), settings=IntakeSettings(foreground="net", foreground_weights=nothing))


def test_alpha_and_masks_take_precedence_and_missing_weights(tmp_path, monkeypatch):
    everything = str(constant_weights(tmp_path / "all.pt", 20.0))
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[30:60, 20:70] = (250, 250, 250, 255)  # a white object with real transparency
    with_net = prepare_array(rgba, settings=IntakeSettings(foreground_weights=everything))
    assert with_net.foreground_source == "alpha"
    assert torch.equal(with_net.rgba, prepare_array(rgba, settings=IntakeSettings(foreground="border")).rgba)
    mask = np.zeros((96, 96), bool)
    mask[10:20, 10:20] = True
    given = prepare_array(picture(), mask, settings=IntakeSettings(foreground_weights=everything))
    assert given.foreground_source == "mask" and given.crop_box == prepare_array(picture(), mask).crop_box
    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(tmp_path / "absent.pt"))
    assert prepare_array(picture()).foreground_source == "border"  # 'auto' without shipped weights
    with pytest.raises(FileNotFoundError, match="foreground weights not found"):
        prepare_array(picture(), settings=IntakeSettings(foreground="net"))
    with pytest.raises(FileNotFoundError):
        prepare_array(picture(), settings=IntakeSettings(foreground_weights=str(tmp_path / "absent.pt")))
    with pytest.raises(ValueError, match="foreground must be"):
        IntakeSettings(foreground="magic")


def test_ground_shadow_lies_under_the_object_and_stays_out_of_the_alpha(tiny_data):
    shapes = Shapes.load(tiny_data[0])
    photos = product_photos(shapes, 0, 30.0, 20.0, BACKDROPS, 64, np.random.default_rng(0))
    alphas = [a for _, a in photos.values()]
    assert all(np.array_equal(alphas[0], a) for a in alphas[:-2] + alphas[-1:])  # high-key: its own light, same shape
    outside = alphas[0] < 8
    white, shadowed = (photos[b][0].astype(int).sum(2) for b in ("white", "white, contact shadow"))
    darker = (white - shadowed > 30) & outside
    assert darker.sum() > 20  # a shadow on the ground ...
    rows = np.nonzero(darker)[0]
    assert np.median(rows) > np.median(np.nonzero(~outside)[0])  # ... below the object's middle
    mesh, _ = shapes.mesh(0)
    from softras.camera import Camera

    above = ground_shadow(mesh.vertices, mesh.faces, Camera.from_angles(2.732, 30.0, 20.0), 64, np.array([[0.0, 1.0, 0.0]]))
    assert above.max() > 0.9 and above.min() == 0  # straight down: the footprint, dark where it is


def test_true_mask_follows_the_crop_box():
    alpha = np.zeros((100, 100), np.uint8)
    alpha[20:40, 20:40] = 255
    assert true_mask(alpha, (20, 20, 40, 40), 16).all()
    assert true_mask(alpha, (0, 0, 100, 100), 10).sum() == 4


def test_mask_benchmark_small_version_on_tiny_weights(tiny_data, tmp_path, capsys):
    shapes = Shapes.load(tiny_data[0])
    assert (split_by_model(shapes.category, shapes.model_id) == "train").all()  # tiny file: every model trains
    everything = str(constant_weights(tmp_path / "all.pt", 20.0))
    scores = mask_benchmark(shapes, "train", views_per_model=1, size=64, weights=everything, max_models=3)
    assert scores.pictures == 3 and set(scores.iou) == set(BACKDROPS)
    for b in ("white", "grey 226"):  # darker objects on plain light backdrops: the border estimate finds them
        assert scores.iou[b]["border"] > 0.8 and scores.lost[b]["border"] == 0
    assert scores.extra["white"]["net"] == 1.0 and scores.iou["white"]["net"] < 0.6  # the whole picture taken
    assert scores.auto_net_share["white"] == 0.0 and scores.auto_net_share["coloured"] == 0.0  # (no shadow rule hit)
    assert scores.iou["coloured"]["auto"] == scores.iou["coloured"]["border"]
    assert "lose >10%" in format_mask_benchmark(scores)

    from softras.cli import main

    assert main(["foreground-bench", "--data", str(tiny_data[0]), "--split", "train", "--size", "64",
                 "--views-per-model", "1", "--max-models", "2", "--foreground-weights", everything, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pictures_per_backdrop"] == 2 and result["mean_mask_iou"]["white"]["net"] < 0.6


def test_training_pictures_are_deterministic_and_from_training_models(tiny_data, tmp_path):
    from datagen.foreground_pictures import main

    args = ["--data", str(tiny_data[0]), "--count", "4", "--size", "64", "--render-size", "48", "--seed", "3"]
    main(args + ["--out", str(tmp_path / "a.npz")])
    main(args + ["--out", str(tmp_path / "b.npz")])
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
        assert a["pictures"].shape == (4, 64, 64, 3) and a["alpha"].shape == (4, 64, 64)
        assert (a["alpha"].reshape(4, -1).max(1) == 255).all()  # every picture shows its object
        assert all(k.split("+")[0] in ("white", "grey", "tint", "colour") for k in a["kind"])


def test_training_script_checkpoints_resumes_and_exports(tiny_data, tmp_path):
    import importlib.util
    from pathlib import Path

    from datagen.foreground_pictures import main as make

    make(["--data", str(tiny_data[0]), "--count", "6", "--size", "64", "--render-size", "48", "--out", str(tmp_path / "p.npz")])
    spec = importlib.util.spec_from_file_location("train_foreground", Path(__file__).parents[1] / "scripts" / "train_foreground.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    common = ["--pictures", str(tmp_path / "p.npz"), "--run", str(tmp_path / "run"), "--batch-size", "2", "--every", "1",
              "--widths", "4", "4", "6", "6", "8", "--threads", "1"]
    module.main(common + ["--steps", "1"])
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    module.main(common + ["--steps", "2", "--out", str(tmp_path / "fg.pt")])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert first["step"] == 1 and state["step"] == 2 and len(state["history"]) == 2
    net, meta = load_foreground(tmp_path / "fg.pt")
    assert meta["steps"] == 2 and net.cfg.widths == (4, 4, 6, 6, 8)


def opaque_photo(path, size=(90, 70)):
    """A dark ellipse on a white backdrop, no alpha (a JPEG-like opaque picture, saved as PNG)."""
    yy, xx = np.mgrid[: size[1], : size[0]]
    inside = ((xx - 40) / 25) ** 2 + ((yy - 30) / 18) ** 2 <= 1
    rgb = np.full((size[1], size[0], 3), 255, np.uint8)
    rgb[inside] = (40, 60, 180)
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path, inside


def test_save_mask_writes_the_foreground_used_and_it_gives_back_the_same_input(tmp_path, tiny_weights, capsys,
                                                                              monkeypatch):
    from PIL import Image

    from softras.cli import main
    from softras.intake import foreground_mask, load_image

    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(tmp_path / "absent.pt"))  # the border estimate, whatever ships
    photo, inside = opaque_photo(tmp_path / "cup.png")
    assert main(["reconstruct", str(photo), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--no-texture",
                 "--save-mask"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    mask = np.asarray(Image.open(tmp_path / "out" / "cup_mask.png"))
    assert record["mask"].endswith("cup_mask.png") and record["foreground"] == "border"
    assert mask.shape == (70, 90) and set(np.unique(mask)) == {0, 255}
    assert ((mask > 127) == inside).mean() > 0.97
    first = load_image(photo)
    again = load_image(photo, tmp_path / "out" / "cup_mask.png")  # given back as a mask: the same crop
    assert again.foreground_source == "mask" and again.crop_box == first.crop_box
    assert np.array_equal(foreground_mask(again), mask)


def test_batch_save_mask(tmp_path, tiny_weights, monkeypatch):
    from PIL import Image

    from softras_blender.batch import main

    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(tmp_path / "absent.pt"))
    (tmp_path / "in").mkdir()
    opaque_photo(tmp_path / "in" / "cup.png")
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--format", "ply", "--weights",
                 str(tiny_weights), "--device", "cpu", "--no-texture", "--save-mask"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary[0]["mask"].endswith("cup_mask.png") and summary[0]["foreground"] == "border"
    assert np.asarray(Image.open(tmp_path / "out" / "cup_mask.png")).shape == (70, 90)


def test_training_inputs_take_the_border_estimate_and_evaluation_the_rule(tmp_path, monkeypatch):
    import softras.foreground
    from softras.augment import AugmentSettings
    from softras.inputs import InputSettings, generator_input, generator_inputs

    monkeypatch.setenv("SOFTRAS_FOREGROUND", str(constant_weights(tmp_path / "fg.pt", 0.0)))
    calls = []
    monkeypatch.setattr(softras.foreground, "foreground_probability",
                        lambda net, rgb, size=None: calls.append(rgb.shape) or np.zeros(rgb.shape[:2], np.float32))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[20:44, 16:48] = (90, 60, 40, 255)
    on_white = AugmentSettings(reframe=0, low_resolution=0, blur=0, recolor=0, no_alpha=1.0, white=1.0, noise=0, jpeg=0)
    inputs, _, _ = generator_inputs(rgba[None].repeat(3, 0), 32, InputSettings(augment=on_white), np.random.default_rng(0))
    assert calls == [] and inputs.shape == (3, 4, 32, 32)
    generator_input(np.where(rgba[..., 3:] > 0, rgba[..., :3], 255).astype(np.uint8), 32)  # a photo on white, as users give
    assert calls == [(64, 64, 3)]
