"""Numeric precision of a forward pass: ``auto``, ``fp32``, ``bf16`` or ``fp16``, resolved once per device.

``auto`` picks bf16 only where the hardware computes it natively — CUDA devices that support it and CPUs
with AVX512-BF16 or AMX-BF16 that oneDNN uses — and fp32 everywhere else: on a CPU without those units
bf16 is emulated and was measured 144× slower than fp32. Mixed precision is torch autocast around the
model forward; the exact sampling core (FPS, kNN, ball query, grouping) is elementwise arithmetic that
autocast leaves in float32, so its indices do not depend on the precision. For inference,
:func:`low_precision_weights` casts the weights autocast would cast on every call once for a whole run;
:func:`fold_attention_inputs` keeps the attention layers of open_clip's towers off a slow path autocast opens.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from torch import nn

# torch is imported where it is used, so the CLI can take these choices and help without loading it.
CHOICES = ("auto", "fp32", "bf16", "fp16")
HELP = "auto (bf16 on CUDA and on CPUs with native bf16, else fp32), fp32, bf16 or fp16 (CUDA only)."


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``dtype`` is the autocast dtype, ``None`` for plain float32."""

    name: str
    dtype: torch.dtype | None
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.name, "reason": self.reason}


def cpu_bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic units (AVX512-BF16 or AMX-BF16) that torch's oneDNN uses."""
    import torch

    caps: dict[str, Any] = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    units = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return (units and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def cuda_bf16(device: torch.device) -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False)) if device.type == "cuda" else False


def resolve_precision(requested: str, device: str | torch.device) -> Precision:
    """The precision to run ``requested`` with on ``device``; raises :class:`ConfigError` when it cannot."""
    import torch

    device = torch.device(device)
    kind = device.type
    if requested not in CHOICES:
        raise ConfigError("--precision", f"'{requested}' is not one of {', '.join(CHOICES)}")
    if requested == "auto":
        if kind == "cuda":
            if cuda_bf16(device):
                return Precision("bf16", torch.bfloat16, "auto: the CUDA device supports bf16")
            return Precision("fp32", None, "auto: the CUDA device has no bf16")
        if kind == "cpu" and cpu_bf16_native():
            return Precision("bf16", torch.bfloat16, "auto: the CPU has native bf16 (AVX512-BF16/AMX)")
        if kind == "cpu":
            return Precision("fp32", None, "auto: the CPU has no native bf16 (emulated bf16 is far slower)")
        return Precision("fp32", None, f"auto: fp32 on {kind}")
    if requested == "fp32":
        return Precision("fp32", None, "requested")
    if requested == "fp16" and kind != "cuda":
        raise ConfigError("--precision", f"fp16 needs a CUDA device, not {kind}; use bf16 or fp32")
    if requested == "bf16" and kind == "cuda" and not cuda_bf16(device):
        raise ConfigError("--precision", f"{device} does not support bf16; use fp16 or fp32")
    if requested == "bf16" and kind == "cpu" and not cpu_bf16_native():
        return Precision("bf16", torch.bfloat16, "requested (this CPU emulates bf16: expect it slower than fp32)")
    return Precision(requested, torch.bfloat16 if requested == "bf16" else torch.float16, "requested")


def autocast(precision: Precision, device: str | torch.device) -> contextlib.AbstractContextManager:
    """The context to run a model forward in: torch autocast for bf16/fp16, nothing for fp32.

    Outputs come out in the autocast dtype; callers cast them with ``.float()``.
    """
    import torch

    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=precision.dtype)


@contextlib.contextmanager
def low_precision_weights(model: nn.Module, precision: Precision) -> Iterator[nn.Module]:
    """Run inference with the weights of ``model``'s linear and convolution layers already in the autocast dtype.

    Autocast casts an fp32 weight to bf16 at every call: for a ViT-L tower at batch 1 that copy is a tenth of the
    bf16 forward. Cast once here, the forward under :func:`autocast` computes the same products without it. The
    fp32 weights are put back on exit, even after an error. ``nn.MultiheadAttention`` keeps its fp32 weights: its
    fused inference kernel runs only when query and weights share a dtype, and with bf16 weights it fell back to
    the unfused path, which was slower than the per-call cast it saved. Not for training: gradients would reach
    the bf16 copies. Memory: the fp32 weights stay where they are while the copies are used, so the cast layers
    take 1.5× their fp32 size for the run (plain autocast holds only the copy of the layer it is running).
    """
    import torch
    from torch import nn

    if precision.dtype is None:
        yield model
        return
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    originals: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for layer in model.modules():
                if not isinstance(layer, layers):
                    continue
                for p in (layer.weight, layer.bias):
                    # A tied layer is reached more than once; it is cast (and restored) once.
                    if p is not None and p.dtype == torch.float32 and id(p) not in originals:
                        originals[id(p)] = (p, p.data)
                        p.data = p.data.to(precision.dtype)
        yield model
    finally:
        for p, data in originals.values():
            p.data = data


def fold_attention_inputs(model: nn.Module) -> nn.Module:
    """Lay out the inputs of every batch-first ``nn.MultiheadAttention`` in ``model`` so that, where the module
    skips its fused kernel, its projections run as one 2-D product; returns ``model``.

    The unfused path transposes a batch-first input to sequence-first and projects it with ``linear``, and torch
    multiplies that non-contiguous 3-D input as a ``bmm`` over a copy of the weight expanded once per position.
    It is taken under autocast (bf16 activations meet fp32 weights), with a float attention mask (open_clip's
    causal text tower, in fp32 too), in training and when gradients are needed. open_clip's ViT-B/16 image tower,
    8 images, 2 CPU threads (``benchmarks/bench_train.py --cache-only``): bf16 autocast 4.84 s, fp32 1.49 s, bf16
    with this hook 0.44 s. The hook hands the module a tensor whose transpose is contiguous: the same values in
    another memory order. Where the fused kernel will run it changes nothing (a non-contiguous input would cost
    that kernel the same weight copy). Installed once per module.
    """
    from torch import nn

    for layer in model.modules():
        if isinstance(layer, nn.MultiheadAttention) and _relayout not in layer._forward_pre_hooks.values():
            layer.register_forward_pre_hook(_relayout, with_kwargs=True)
    return model


_QKV = ("query", "key", "value")


def _relayout(layer: nn.MultiheadAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    positional = min(len(args), 3)  # query, key and value come positionally, by keyword, or split between
    given = [*args[:positional], *(kwargs.get(n) for n in _QKV[positional:])]
    if not layer.batch_first or any(x is None for x in given) or given[0].dim() != 3:
        return None
    if not _unfused(layer, *given, kwargs.get("attn_mask"), kwargs.get("key_padding_mask")):
        return None
    laid: dict[int, torch.Tensor] = {}  # self-attention passes one tensor three times; the module tests `is`
    for x in given:
        if id(x) not in laid:
            laid[id(x)] = x.transpose(0, 1).contiguous().transpose(0, 1)
    new = [laid[id(x)] for x in given]
    return (*new[:positional], *args[positional:]), {**kwargs, **dict(zip(_QKV[positional:], new[positional:]))}


def _unfused(layer: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None) -> bool:
    """Whether ``layer`` certainly skips its fused kernel for these inputs: the reasons
    ``nn.MultiheadAttention.forward`` checks that hold here. A reason not listed only leaves the input as it
    came."""
    import torch

    if layer.training or not torch.backends.mha.get_fastpath_enabled() or torch.is_autocast_enabled("cuda"):
        return True
    if query is not key or key is not value:
        return True
    if any(m is not None and torch.is_floating_point(m) for m in (attn_mask, key_padding_mask)):
        return True
    weight = layer.in_proj_weight
    if weight is None or query.dtype != weight.dtype:
        return True
    tensors = (query, weight, layer.in_proj_bias, layer.out_proj.weight, layer.out_proj.bias)
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
