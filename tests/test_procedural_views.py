"""datagen.procedural_views (memory-mapped views of a procedural pack, resumable) and training on real plus
procedural shapes (TrainConfig.procedural_views / procedural_share)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from datagen import procedural_views as pv
from softras.data import ViewSet, _mapped_member
from softras.train import TrainConfig, _BatchSampler, _SplitSampler, train

from test_generator import tiny_config


def test_views_are_memory_mapped_and_the_same_after_an_interruption(tiny_data, tmp_path, monkeypatch):
    shapes, _ = tiny_data
    whole = pv.render(shapes, tmp_path / "whole.npz", [0.0, 30.0], 2, 32, (0.6, 0.8), seed=3, chunk=2)
    views = ViewSet(whole, None)
    assert views.images.shape == (6, 4, 32, 32, 4) and views.num_views == 4
    assert isinstance(_mapped_member(whole, "images"), np.memmap)
    assert torch.equal(views.elevations, torch.tensor([0.0, 0.0, 30.0, 30.0]))
    assert torch.equal(views.azimuths, torch.tensor([0.0, 180.0, 0.0, 180.0]))
    assert (views.images[..., 3] > 0).any((-1, -2)).all()  # every render shows its shape

    real_render, calls = pv.render_views, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(pv, "render_views", failing)
    with pytest.raises(KeyboardInterrupt):
        pv.render(shapes, tmp_path / "resumed.npz", [0.0, 30.0], 2, 32, (0.6, 0.8), seed=3, chunk=2)
    assert not (tmp_path / "resumed.npz").exists() and (tmp_path / "resumed.part.json").exists()
    monkeypatch.setattr(pv, "render_views", real_render)
    resumed = pv.render(shapes, tmp_path / "resumed.npz", [0.0, 30.0], 2, 32, (0.6, 0.8), seed=3, chunk=2)
    assert torch.equal(ViewSet(resumed, None).images, views.images)
    assert not (tmp_path / "resumed.part.npy").exists()


def test_batches_mix_real_and_procedural_objects(tiny_data, tmp_path):
    shapes, views_path = tiny_data
    procedural = pv.render(shapes, tmp_path / "proc.npz", [30.0], 4, 32, (0.6, 0.8), seed=0)
    cfg = tiny_config(tiny_data, tmp_path / "run", procedural_views=str(procedural), procedural_share=0.25,
                      steps=2, batch_size=8)
    real, proc = ViewSet(views_path, "train"), ViewSet(procedural, None)
    base = _BatchSampler(real, 6, 0, 0, 32, real.views_at(None), True, None, None)
    sampler = _SplitSampler(base, dataclasses.replace(base, views=proc, input_views=proc.views_at(None),
                                                      batch_size=2, seed=9))
    batch = sampler(5)
    assert batch.inputs.shape == (8, 4, 32, 32) and batch.cameras_a.batch_size == 8
    assert torch.equal(sampler(5).inputs, batch.inputs)  # a step's batch depends on the step alone
    assert (batch.models[6:] < proc.num_models).all()
    train(cfg)
    with pytest.raises(ValueError, match="procedural_share"):
        TrainConfig.from_dict({**cfg.as_dict(), "procedural_share": 0.0})
    with pytest.raises(ValueError, match="procedural_share"):
        TrainConfig.from_dict({**cfg.as_dict(), "procedural_views": None})
    with pytest.raises(ValueError, match="leave at least one"):
        train(tiny_config(tiny_data, tmp_path / "run2", procedural_views=str(procedural), procedural_share=0.05,
                          steps=1, batch_size=8))
