"""PointNet++ set-abstraction tokenizer for xyz+rgb clouds (OpenShape / vitlensG lenses)."""
from __future__ import annotations

import torch
from torch import nn

from ..points.sampling import ball_query, farthest_point_sample, gather_points
from .norm import channels_last_bn


class SetAbstraction(nn.Module):
    """Ball-query groups of ``[p_j - c, features_j]`` through a shared MLP, max-pooled per group.

    Conv2d 1×1 + BatchNorm2d in the official code; Linear + BatchNorm1d here (same map, channels-last).
    """

    def __init__(self, in_channels: int, encoder_dims: int) -> None:
        super().__init__()
        widths = [in_channels + 3, 64, 64, encoder_dims]
        self.mlp_convs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mlp_bns = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])

    def biases_before_batch_norm(self) -> list[nn.Parameter]:
        return [lin.bias for lin in self.mlp_convs]

    def forward(self, grouped: torch.Tensor) -> torch.Tensor:
        h = grouped
        for lin, bn in zip(self.mlp_convs, self.mlp_bns):
            h = lin(h)
            h = torch.relu(channels_last_bn(bn, h))
        return h.amax(dim=2)


class PNSATokenizer(nn.Module):
    def __init__(self, in_channels: int, num_group: int, group_size: int, radius: float,
                 encoder_dims: int, trans_dim: int) -> None:
        super().__init__()
        self.num_group = num_group
        self.group_size = group_size
        self.radius = radius
        self.sa = SetAbstraction(in_channels, encoder_dims)
        # Index 1 is a parameter-free slot (a transpose in the official code) so keys stay lift.0 / lift.2.
        self.lift = nn.Sequential(nn.Linear(3 + encoder_dims, trans_dim), nn.Identity(), nn.LayerNorm(trans_dim))

    def biases_before_batch_norm(self) -> list[nn.Parameter]:
        return self.sa.biases_before_batch_norm()

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``points = [xyz, features]`` of shape ``(B, N, C)``; the whole row is the feature (OpenShape)."""
        xyz = points[..., :3].contiguous()
        with torch.no_grad():
            fps_idx = farthest_point_sample(xyz, self.num_group).to(xyz.device)
        centers = gather_points(xyz, fps_idx)
        with torch.no_grad():
            idx = ball_query(xyz, centers, self.radius, self.group_size).to(xyz.device)
        grouped = torch.cat([gather_points(xyz, idx) - centers[:, :, None, :], gather_points(points, idx)], dim=-1)
        feats = self.sa(grouped)
        return self.lift(torch.cat([centers, feats], dim=-1))
