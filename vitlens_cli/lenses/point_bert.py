"""Point-BERT-style tokenizer: FPS centres, kNN groups, mini-PointNet, centre-position MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..points.sampling import farthest_point_sample, gather_points, knn_query
from .norm import channels_last_bn as _bn


class MiniPointNet(nn.Module):
    """Per-group PointNet with the global feature concatenated *before* the local one.

    The official code uses ``Conv1d(kernel_size=1)``; a Linear on channels-last data is the same
    map and runs faster on CPU. Checkpoint loading reshapes the ``(out, in, 1)`` kernels.
    """

    def __init__(self, encoder_dims: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Linear(3, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Linear(128, 256))
        self.second_conv = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Linear(512, encoder_dims))

    def biases_before_batch_norm(self) -> list[nn.Parameter]:
        # first_conv.3's bias shifts both halves of the concat equally, so it reaches BatchNorm as a
        # per-channel constant too.
        return [self.first_conv[0].bias, self.first_conv[3].bias, self.second_conv[0].bias]

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """``(B, G, k, 3)`` neighbourhoods → ``(B, G, encoder_dims)``."""
        fc = self.first_conv
        h = fc[3](F.relu(_bn(fc[1], fc[0](groups))))
        g = h.amax(dim=2, keepdim=True)
        sc = self.second_conv
        # Linear([g, h]) = g·W_gᵀ + h·W_hᵀ + b: the global half is computed once per group instead of
        # once per point, halving the cost of the widest layer with the same result.
        w, width = sc[0].weight, g.shape[-1]
        h = F.linear(h, w[:, width:]) + F.linear(g, w[:, :width], sc[0].bias)
        h = sc[3](F.relu(_bn(sc[1], h)))
        return h.amax(dim=2)


class PointBertTokenizer(nn.Module):
    def __init__(self, num_group: int, group_size: int, encoder_dims: int, trans_dim: int) -> None:
        super().__init__()
        self.num_group = num_group
        self.group_size = group_size
        self.encoder = MiniPointNet(encoder_dims)
        self.reduce_dim = nn.Linear(encoder_dims, trans_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))

    def biases_before_batch_norm(self) -> list[nn.Parameter]:
        return self.encoder.biases_before_batch_norm()

    def group(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """FPS centres ``(B, G, 3)``, neighbour indices ``(B, G, k)`` and centred groups ``(B, G, k, 3)``."""
        with torch.no_grad():
            fps_idx = farthest_point_sample(xyz, self.num_group).to(xyz.device)
        centers = gather_points(xyz, fps_idx)
        with torch.no_grad():
            idx = knn_query(xyz, centers, self.group_size).to(xyz.device)
        groups = gather_points(xyz, idx) - centers[:, :, None, :]
        return centers, idx, groups

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        xyz = points[..., :3].contiguous()
        centers, _, groups = self.group(xyz)
        return self.reduce_dim(self.encoder(groups)) + self.pos_embed(centers)
