"""Precision resolution per device, bf16 forward fidelity, and the sampling core untouched by autocast."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
import torch

from vitlens_cli import precision as prec
from vitlens_cli.errors import ConfigError
from vitlens_cli.models import LensTower, get_spec
from vitlens_cli.points.sampling import ball_query, farthest_point_sample, gather_points, knn_query


@pytest.fixture
def cpu_bf16(monkeypatch):
    def set_native(native: bool) -> None:
        monkeypatch.setattr(prec, "cpu_bf16_native", lambda: native)
    return set_native


@pytest.fixture
def cuda_bf16(monkeypatch):
    def set_support(ok: bool) -> None:
        monkeypatch.setattr(prec, "cuda_bf16", lambda device: ok)
    return set_support


def test_auto_on_cpu_follows_native_bf16(cpu_bf16):
    cpu_bf16(True)
    p = prec.resolve_precision("auto", "cpu")
    assert (p.name, p.dtype) == ("bf16", torch.bfloat16) and "native" in p.reason
    cpu_bf16(False)
    p = prec.resolve_precision("auto", "cpu")
    assert (p.name, p.dtype) == ("fp32", None) and "no native bf16" in p.reason


def test_auto_on_cuda_follows_device_support(cuda_bf16):
    cuda_bf16(True)
    assert prec.resolve_precision("auto", "cuda:1").dtype is torch.bfloat16
    cuda_bf16(False)
    assert prec.resolve_precision("auto", "cuda").name == "fp32"


def test_auto_elsewhere_is_fp32():
    assert prec.resolve_precision("auto", "mps").dtype is None


def test_explicit_choices(cpu_bf16, cuda_bf16):
    cpu_bf16(False)
    p = prec.resolve_precision("bf16", "cpu")  # allowed when asked for, with the warning in the reason
    assert p.dtype is torch.bfloat16 and "slower" in p.reason
    cpu_bf16(True)
    assert prec.resolve_precision("bf16", "cpu").reason == "requested"
    assert prec.resolve_precision("fp32", "cuda").dtype is None
    assert prec.resolve_precision("fp16", "cuda").dtype is torch.float16
    cuda_bf16(False)
    with pytest.raises(ConfigError, match="^--precision: cuda does not support bf16"):
        prec.resolve_precision("bf16", "cuda")


@pytest.mark.parametrize("bad,message", [("fp16", "fp16 needs a CUDA device, not cpu"),
                                         ("fp8", "'fp8' is not one of auto, fp32, bf16, fp16")])
def test_refusals_are_one_line(bad, message):
    with pytest.raises(ConfigError) as info:
        prec.resolve_precision(bad, "cpu")
    assert info.value.subject == "--precision" and message in info.value.reason and "\n" not in str(info.value)


def test_probe_is_off_when_torch_runs_avx2_kernels():
    """Forcing torch's AVX2 kernels (as on an AVX2-only CPU) must turn auto into fp32 on any machine."""
    code = ("from vitlens_cli.precision import cpu_bf16_native, resolve_precision; "
            "print(cpu_bf16_native(), resolve_precision('auto', 'cpu').name)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "fp32"]


def test_probe_is_off_without_bf16_units(monkeypatch):
    caps = {**torch.cpu.get_capabilities(), "avx512_bf16": False, "amx_bf16": False}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert prec.cpu_bf16_native() is False
    assert prec.resolve_precision("auto", "cpu").name == "fp32"


def test_fp32_runs_without_autocast():
    with prec.autocast(prec.Precision("fp32", None, "requested"), "cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32


def test_bf16_forward_of_a_tiny_tower_matches_fp32():
    torch.manual_seed(0)
    tower = LensTower(get_spec("tiny").lens).eval()
    pts = torch.randn(2, 1024, 3)
    pts = pts / pts.norm(dim=-1).max()
    bf16 = prec.Precision("bf16", torch.bfloat16, "requested")
    with torch.inference_mode():
        ref = tower(pts)
        with prec.autocast(bf16, "cpu"):
            low = tower(pts)
    assert low.dtype is torch.bfloat16  # autocast really ran the forward in bf16
    cos = torch.nn.functional.cosine_similarity(low.float(), ref, dim=-1)
    assert cos.min().item() >= 0.99
    assert (low.float() - ref).abs().max().item() > 0  # and it is not the fp32 result


def _tiny_tower_and_clouds():
    torch.manual_seed(0)
    tower = LensTower(get_spec("tiny").lens).eval()
    pts = torch.randn(2, 1024, 3)
    return tower, pts / pts.norm(dim=-1).max()


def test_low_precision_weights_give_the_autocast_result_and_are_restored():
    tower, pts = _tiny_tower_and_clouds()
    bf16 = prec.Precision("bf16", torch.bfloat16, "requested")
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    with torch.inference_mode(), prec.autocast(bf16, "cpu"):
        ref = tower(pts)
    with prec.low_precision_weights(tower, bf16):
        linear = next(m for m in tower.modules() if isinstance(m, torch.nn.Linear))
        mha = next(m for m in tower.modules() if isinstance(m, torch.nn.MultiheadAttention))
        assert linear.weight.dtype is torch.bfloat16 and mha.in_proj_weight.dtype is torch.float32
        with torch.inference_mode(), prec.autocast(bf16, "cpu"):
            got = tower(pts)
    assert torch.equal(got, ref)  # the same products, only cast once
    after = tower.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


# one item's lens input per tower of tiny-omni (audio: one clip's log-mel frames)
OMNI_INPUTS = {"3d": (1024, 3), "depth": (1, 224, 224), "audio": (512, 128), "tactile": (3, 224, 224),
               "eeg": (128, 512), "image": (3, 224, 224)}


@pytest.fixture(scope="module")
def omni():
    from vitlens_cli.models import build_model

    torch.manual_seed(0)
    return build_model(get_spec("tiny-omni")).eval()


@pytest.mark.parametrize("modality", list(OMNI_INPUTS))
def test_low_precision_weights_equal_autocast_on_every_tower(omni, modality):
    tower = omni.tower(modality)
    x = torch.randn(2, *OMNI_INPUTS[modality], generator=torch.Generator().manual_seed(1))
    bf16 = prec.Precision("bf16", torch.bfloat16, "requested")
    with torch.inference_mode(), prec.autocast(bf16, "cpu"):
        ref = tower(x)
    with prec.low_precision_weights(tower, bf16), torch.inference_mode(), prec.autocast(bf16, "cpu"):
        got = tower(x)
    assert torch.equal(got, ref)


def test_low_precision_weights_restored_after_an_error_and_cast_once_when_tied():
    lin = torch.nn.Linear(4, 4)
    tied = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)
    w = lin.weight.detach().clone()
    bf16 = prec.Precision("bf16", torch.bfloat16, "requested")
    with pytest.raises(RuntimeError, match="boom"), prec.low_precision_weights(tied, bf16):
        assert lin.weight.dtype is torch.bfloat16
        raise RuntimeError("boom")
    assert lin.weight.dtype is torch.float32 and torch.equal(lin.weight, w)
    with prec.low_precision_weights(tied, prec.Precision("fp32", None, "requested")):
        assert lin.weight.dtype is torch.float32


def test_sampling_indices_identical_under_autocast():
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(2, 2048, 3, generator=g)
    centers_ref = gather_points(pts, farthest_point_sample(pts, 64))
    ref = (farthest_point_sample(pts, 64), knn_query(pts, centers_ref, 16), ball_query(pts, centers_ref, 0.1, 16))
    with prec.autocast(prec.Precision("bf16", torch.bfloat16, "requested"), "cpu"):
        idx = farthest_point_sample(pts, 64)
        centers = gather_points(pts, idx)
        got = (idx, knn_query(pts, centers, 16), ball_query(pts, centers, 0.1, 16))
        # the any-device torch paths (taken on CUDA) run on CPU tensors here through their private kernels
        from vitlens_cli.points import sampling

        torch_knn = sampling._knn_torch(pts, centers, 16)
        torch_fps = sampling._fps_torch(pts, 64, 0)
    assert centers.dtype is torch.float32
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    assert torch.equal(torch_knn, ref[1]) and torch.equal(torch_fps, ref[0])


def _weight_copy_products(run) -> int:
    """How many ``bmm`` calls ``run`` makes whose second operand is a ``(n, 64, k)`` stack: the width-64 towers
    below projecting a transposed input through an expanded copy of a weight."""
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        run()
    return sum(e.count for e in prof.key_averages(group_by_input_shape=True)
               if e.key == "aten::bmm" and len(e.input_shapes[1]) == 3 and e.input_shapes[1][1] == 64)


def _open_clip_towers():
    from open_clip.transformer import TextTransformer, VisionTransformer

    torch.manual_seed(0)
    image = VisionTransformer(image_size=32, patch_size=8, width=64, layers=2, heads=4, mlp_ratio=4.0,
                              output_dim=32).eval().requires_grad_(False)
    text = TextTransformer(context_length=16, vocab_size=100, width=64, heads=4, layers=2,
                           output_dim=32).eval().requires_grad_(False)
    return image, torch.randn(4, 3, 32, 32), text, torch.randint(1, 100, (4, 16))


@pytest.mark.parametrize("case", ["image tower, bf16 autocast", "text tower (float causal mask), fp32"])
def test_folded_attention_inputs_take_the_2d_product_with_the_same_result(case):
    import copy

    image, pixels, text, ids = _open_clip_towers()
    tower, x = (image, pixels) if case.startswith("image") else (text, ids)
    folded = prec.fold_attention_inputs(copy.deepcopy(tower))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in case else contextlib.nullcontext
    with torch.no_grad(), ctx():
        assert _weight_copy_products(lambda: tower(x)) > 0  # the control: torch's path copies the weight
        assert _weight_copy_products(lambda: folded(x)) == 0
        ref, got = tower(x), folded(x)
    assert got.dtype == ref.dtype
    torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2 if "bf16" in case else 1e-5,
                               atol=2e-2 if "bf16" in case else 1e-5)


def test_folding_leaves_the_fused_kernel_its_input():
    tower, pts = _tiny_tower_and_clouds()
    prec.fold_attention_inputs(prec.fold_attention_inputs(tower))  # installed once however often asked
    mha = next(m for m in tower.modules() if isinstance(m, torch.nn.MultiheadAttention))
    assert len(mha._forward_pre_hooks) == 1
    x = torch.randn(2, 5, mha.embed_dim)
    with torch.no_grad():
        assert prec._relayout(mha, (x, x, x), {}) is None  # eval, no grad, one dtype: the fused kernel runs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert prec._relayout(mha, (x, x, x), {}) is None  # fp32 rows meet fp32 weights: still fused
            low = x.bfloat16()
            (q, k, v), _ = prec._relayout(mha, (low, low, low), {})
    assert q is k is v and torch.equal(q, low) and q.transpose(0, 1).is_contiguous()
    mha.train()
    (q,), kw = prec._relayout(mha, (x,), {"key": x, "value": x, "need_weights": False})
    assert kw["key"] is q and kw["value"] is q and kw["need_weights"] is False
    with torch.no_grad():
        mha.eval()
        from vitlens_cli.models import build_model

        assert _weight_copy_products(lambda: tower(pts)) == 0
        model = build_model(get_spec("tiny"))  # the factory folds every tower of a model it builds
        assert all(_relayout_installed(m) for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention))


def _relayout_installed(mha) -> bool:
    return prec._relayout in mha._forward_pre_hooks.values()
