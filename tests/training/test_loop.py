"""The training loop end to end on the tiny recipe: freezing, SIGKILL + resume, 2-process DDP equivalence."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitlens_cli.training.model_init import build_training_model
from vitlens_cli.training.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny-cpu.yaml"
SMALL = ["data.options.size=96", "batch_size=8", "log_every=1", "optim.warmup_steps=2"]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=600, **kw)


def _final(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


def test_only_the_trainable_set_learns(tmp_path):
    overrides = SMALL + ["max_steps=3", f"output_dir={tmp_path}"]
    recipe = load_recipe(RECIPE, overrides)
    start = {f"{k}": v.clone() for k, v in build_training_model(recipe).model.state_dict().items()}
    trainable = set(build_training_model(recipe).trainable)
    res = _run([sys.executable, "-m", "vitlens_cli", "train", "--recipe", str(RECIPE), *overrides])
    assert res.returncode == 0, res.stderr[-2000:]
    end = _final(tmp_path)
    assert trainable == set(json.loads((tmp_path / "trainable.json").read_text()))
    assert any(k.startswith("point.visual_adapter.") for k in trainable)
    assert not any(k.startswith(("point.transformer.", "text.")) for k in trainable)
    for name, before in start.items():
        if name in trainable:
            continue
        if "running_" in name or "num_batches_tracked" in name:
            continue  # BatchNorm statistics move in training mode by design
        assert torch.equal(end[name], before), f"frozen {name} changed"
    changed = [n for n in trainable if not torch.equal(end[n], start[n])]
    assert changed and all(n in changed for n in trainable if n.startswith("point.perceiver.layers.0.0"))

    # the exported lens is usable as it is
    import numpy as np

    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(700, 3)).astype(np.float32))
    res = _run([sys.executable, "-m", "vitlens_cli", "embed", str(tmp_path / "cloud.npy"), "--checkpoint",
                str(tmp_path / "final"), "--text", "a cone", "--json"])
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["embedded"] == 1 and summary["dim"] == 32 and summary["model"] == "tiny-cpu"


def test_gradients_reach_only_trainable_parameters():
    recipe = load_recipe(RECIPE, SMALL)
    tm = build_training_model(recipe)
    pts = torch.randn(4, 512, 3)
    lens = torch.nn.functional.normalize(tm.model.point(pts), dim=-1)
    text = torch.nn.functional.normalize(tm.model.encode_text(["a box", "a cone", "a torus", "a sphere"]), dim=-1)
    (tm.model.logit_scale.exp() * lens @ text.T).logsumexp(-1).mean().backward()
    for name, p in tm.model.named_parameters():
        if name in tm.trainable:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    base = SMALL + ["max_steps=6", "save_every=2"]
    whole = tmp_path / "whole"
    res = _run([sys.executable, "-m", "vitlens_cli", "train", "--recipe", str(RECIPE), *base, f"output_dir={whole}"])
    assert res.returncode == 0, res.stderr[-2000:]

    cut = tmp_path / "cut"
    killer = textwrap.dedent(f"""
        import os, signal
        from vitlens_cli.training.loop import train
        from vitlens_cli.training.recipe import load_recipe
        recipe = load_recipe({str(RECIPE)!r}, {base + [f"output_dir={cut}"]!r})
        def on_step(log):
            if log.step == 3:  # after step 3's files; the last checkpoint is step 2's
                os.kill(os.getpid(), signal.SIGKILL)
        train(recipe, on_step=on_step)
    """)
    res = _run([sys.executable, "-c", killer])
    assert res.returncode == -9
    ckpts = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert ckpts == ["latest", "step-00000002.pt"]  # nothing half-written next to them
    assert not (cut / "final").exists()
    res = _run([sys.executable, "-m", "vitlens_cli", "train", "--recipe", str(RECIPE), *base, f"output_dir={cut}",
                "--resume", "latest"])
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = _final(whole), _final(cut)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    losses = lambda d: [r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert losses(whole) == losses(cut)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    common = ["data.options.size=96", "log_every=1", "optim.warmup_steps=2", "max_steps=3", "save_every=3"]
    one, two = tmp_path / "one", tmp_path / "two"
    res = _run([sys.executable, "-m", "vitlens_cli", "train", "--recipe", str(RECIPE), *common, "batch_size=16",
                f"output_dir={one}", "--device", "cpu"])
    assert res.returncode == 0, res.stderr[-2000:]
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "vitlens_cli", "train", "--recipe", str(RECIPE), *common, "batch_size=8",
                f"output_dir={two}", "--device", "cpu"])
    assert res.returncode == 0, res.stderr[-3000:]
    rows = lambda d: list(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))  # noqa: E731
    for r1, r2 in zip(rows(one), rows(two), strict=True):
        assert r1["step"] == r2["step"]
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5, abs=1e-6)
    a, b = _final(one), _final(two)
    # Adam moves every weight by about lr (2e-3 here) per step, whatever its gradient's size, so a
    # gradient within float noise of zero can flip the sign of a step: 1e-4 is 5 % of one step.
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4)


def test_accumulation_and_periodic_validation(tmp_path):
    from vitlens_cli.data.synthetic import write_folder
    from vitlens_cli.training.loop import train

    heldout = write_folder(tmp_path / "heldout", per_class=2, seed=99)
    seen = []
    recipe = load_recipe(RECIPE, SMALL + ["grad_accum=2", "max_steps=2", "save_every=2",
                                          "validation.every=1", f"validation.benchmark={heldout}",
                                          f"output_dir={tmp_path / 'run'}"])
    result = train(recipe, device="cpu", on_step=seen.append)
    assert [log.step for log in seen] == [1, 2]
    assert all(log.val_top1 is not None and 0.0 <= log.val_top1 <= 1.0 for log in seen)
    assert seen[0].samples_per_s > 0 and result.steps == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_top1"] for r in rows] == [log.val_top1 for log in seen]
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
