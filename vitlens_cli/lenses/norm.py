"""BatchNorm over the channel (last) axis, with statistics shared across DDP ranks while training.

With the batch split over processes, each rank's own statistics would differ from those of the
whole batch; sharing the sums makes a K-process step equal a 1-process step on the same batch.
torch's SyncBatchNorm does this on GPUs only, so CPU (gloo) runs need it done here.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def channels_last_bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    # Training always takes the explicit path, one process too, so that K processes and one compute
    # the same sums the same way (torch's fused kernel differs from it by ~1e-3 in gradients).
    out = _batch_stats_bn(bn, flat) if bn.training else bn(flat)
    return out.reshape(x.shape)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if not _distributed():
        return t
    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the public autograd one
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t)


def _batch_stats_bn(bn: nn.BatchNorm1d, flat: torch.Tensor) -> torch.Tensor:
    count = torch.full((1,), float(flat.shape[0]), dtype=flat.dtype, device=flat.device)
    totals = _all_reduce(torch.cat([flat.sum(0), count]))
    n = totals[-1]
    mean = totals[:-1] / n
    # Two passes, like BatchNorm itself: E[x²] − E[x]² loses digits when the mean is large.
    centered = flat - mean
    var = _all_reduce(centered.square().sum(0)) / n
    if bn.track_running_stats:
        with torch.no_grad():
            m = bn.momentum if bn.momentum is not None else 0.1
            bn.running_mean.mul_(1 - m).add_(m * mean.detach())
            bn.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            bn.num_batches_tracked.add_(1)
    scale = torch.rsqrt(var + bn.eps)
    if not bn.affine:
        return centered * scale
    return torch.addcmul(bn.bias, centered, scale * bn.weight)
