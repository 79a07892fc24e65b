"""Views files with WebP-coded images (softras.data.compact_views), read by ViewSet like the raw ones."""

import numpy as np
import pytest
import torch

from softras.data import ViewSet, compact_views


def test_lossless_compact_views_read_back_exactly(tiny_data, tmp_path):
    _, views_path = tiny_data
    packed = compact_views(views_path, tmp_path / "lossless.npz", quality=None)
    for split in ("train", "val", None):
        raw, compact = ViewSet(views_path, split), ViewSet(packed, split)
        assert torch.equal(raw.images, compact.images)
        assert np.array_equal(raw.model_index, compact.model_index) and np.array_equal(raw.category, compact.category)
        assert torch.equal(raw.elevations, compact.elevations) and torch.equal(compact.distances, raw.distances)


def test_lossy_compact_views_keep_alpha_and_a_split(tiny_data, tmp_path):
    _, views_path = tiny_data
    packed = compact_views(views_path, tmp_path / "train.npz", split="train", quality=90)
    raw, compact = ViewSet(views_path, "train"), ViewSet(packed, None)
    assert compact.images.shape == raw.images.shape
    assert torch.equal(compact.images[..., 3], raw.images[..., 3])  # alpha is lossless
    covered = raw.images[..., 3] == 255
    error = (compact.images[..., :3].float() - raw.images[..., :3].float()).abs()[covered]
    assert error.mean() < 3  # 8-bit levels
    with pytest.raises(ValueError, match="no models in split 'val'"):
        ViewSet(packed, "val")
