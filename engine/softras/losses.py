"""Losses of the paper (soft IoU on silhouettes, Laplacian smoothing and flatten regularisers on meshes), the
viewpoint head's azimuth loss and a Chamfer distance between point sets (3D supervision)."""

from __future__ import annotations

import torch

from softras.mesh import adjacent_face_pairs, edges

__all__ = ["soft_iou", "soft_iou_loss", "LaplacianLoss", "FlattenLoss", "chamfer_distance", "azimuth_targets", "azimuth_loss"]


def soft_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft intersection over union per image.

    Args:
        pred, target: (B, H, W) float in [0, 1].
    Returns:
        (B,) ``sum(p t) / sum(p + t - p t)``; two empty images score 1.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must both have shape (B, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    inter = (pred * target).sum((1, 2))
    union = (pred + target - pred * target).sum((1, 2))
    return (inter + eps) / (union + eps)


def soft_iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - soft_iou`` averaged over the batch; a scalar."""
    return 1.0 - soft_iou(pred, target).mean()


class LaplacianLoss(torch.nn.Module):
    """Uniform Laplacian smoothing ``sum_v |v - mean(neighbours(v))|**2``, averaged over the batch.

    The (V, V) operator ``L = I - D^-1 A`` is built once from the topology and kept as a sparse buffer.
    """

    def __init__(self, faces: torch.Tensor, num_vertices: int) -> None:
        super().__init__()
        e = edges(faces)
        ij = torch.cat([e, e.flip(1)], dim=0).T
        degree = torch.zeros(num_vertices).index_add_(0, ij[0], torch.ones(ij.shape[1]))
        values = -1.0 / degree.clamp(min=1)[ij[0]]
        diag = torch.arange(num_vertices)
        indices = torch.cat([ij, torch.stack([diag, diag])], dim=1)
        values = torch.cat([values, (degree > 0).float()])
        self.register_buffer("laplacian", torch.sparse_coo_tensor(indices, values, (num_vertices, num_vertices), check_invariants=True).coalesce())

    def forward(self, vertices: torch.Tensor) -> torch.Tensor:
        """vertices: (B, V, 3) float. Returns a scalar."""
        b, v, _ = vertices.shape
        x = vertices.permute(1, 0, 2).reshape(v, b * 3)
        lx = torch.sparse.mm(self.laplacian.to(vertices.dtype), x)
        return lx.square().sum() / b


class FlattenLoss(torch.nn.Module):
    """Flatten loss ``sum_e (cos(theta_e) + 1)**2`` over edges shared by two faces, averaged over the batch.

    ``theta_e`` is the dihedral angle at edge e (pi for coplanar faces, which costs nothing), measured between
    the perpendiculars dropped from the two opposite vertices onto the shared edge.
    """

    def __init__(self, faces: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pairs", adjacent_face_pairs(faces))

    def forward(self, vertices: torch.Tensor) -> torch.Tensor:
        """vertices: (B, V, 3) float. Returns a scalar."""
        v0, v1, a, b = (vertices[:, self.pairs[:, k]] for k in range(4))
        edge = torch.nn.functional.normalize(v1 - v0, dim=-1, eps=1e-12)

        def perpendicular(p: torch.Tensor) -> torch.Tensor:
            d = p - v0
            return torch.nn.functional.normalize(d - (d * edge).sum(-1, keepdim=True) * edge, dim=-1, eps=1e-12)

        cos = (perpendicular(a) * perpendicular(b)).sum(-1)
        return (cos + 1).square().sum() / vertices.shape[0]


def azimuth_targets(azimuths: torch.Tensor, bins: int, spread: float = 0.5) -> torch.Tensor:
    """Soft classification targets (N, bins) float32 for azimuths (N,) in degrees: a wrapped Gaussian of standard
    deviation ``spread`` bins centred on each azimuth, bin k centred on ``k * 360 / bins`` degrees (the layout of
    :class:`softras.model.ViewpointHead`)."""
    centres = torch.arange(bins, device=azimuths.device) * (360.0 / bins)
    diff = (azimuths.float()[:, None] - centres + 180.0) % 360.0 - 180.0
    w = torch.exp(-0.5 * (diff / (spread * 360.0 / bins)) ** 2)
    return w / w.sum(1, keepdim=True)


def azimuth_loss(logits: torch.Tensor, azimuths: torch.Tensor, spread: float = 0.5) -> torch.Tensor:
    """Cross-entropy of viewpoint logits (N, bins) against :func:`azimuth_targets` of azimuths (N,) degrees."""
    targets = azimuth_targets(azimuths, logits.shape[1], spread)
    return -(targets * torch.log_softmax(logits.float(), 1)).sum(1).mean()


def chamfer_distance(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Symmetric squared Chamfer distance between two point sets per batch item.

    points: (B, N, D), targets: (B, M, D) float (D = 3 for points in space), the same frame and units. Returns (B,):
    the mean over ``points`` of the squared distance to the nearest target plus the mean over ``targets`` of the
    squared distance to the nearest point (units squared). The nearest neighbours are found without autograd (no
    (B, N, M) matrix is kept for the backward pass); the gradient is that of the distances to them, in both
    arguments.
    """
    if points.dim() != 3 or targets.dim() != 3 or points.shape[0] != targets.shape[0] or points.shape[2] != targets.shape[2]:
        raise ValueError(f"points and targets must be (B, N, D) and (B, M, D), got {tuple(points.shape)} and {tuple(targets.shape)}")
    with torch.no_grad():
        distances = torch.cdist(points, targets)
        to_target, to_point = distances.argmin(2), distances.argmin(1)  # (B, N), (B, M)

    def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.gather(1, index[..., None].expand(-1, -1, x.shape[2]))

    forward = (points - gather(targets, to_target)).square().sum(-1).mean(1)
    backward = (targets - gather(points, to_point)).square().sum(-1).mean(1)
    return forward + backward
