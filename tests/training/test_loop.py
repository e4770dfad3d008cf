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
RECIPE = REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml"
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


# every modality: the augmentations draw from the per-item generators, so they too must replay exactly
@pytest.mark.parametrize("recipe_path, small", [
    (RECIPE, SMALL),
    *((REPO / "vitlens_cli" / "recipes" / f"tiny-{m}-cpu.yaml", SMALL + ["data.workers=0", "validation.every=null"])
      for m in ("audio", "depth", "tactile", "eeg")),
], ids=["3d", "audio", "depth", "tactile", "eeg"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, recipe_path, small):
    RECIPE = recipe_path  # noqa: N806 - the harness below reads the recipe under test
    base = small + ["max_steps=6", "save_every=2"]
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
    assert ckpts == ["latest", "step-00000002.pt", "step-00000002.pt.sha256"]  # nothing half-written next to them
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


_DRIVER = """
import os, sys
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from vitlens_cli.training.loop import train
from vitlens_cli.training.recipe import load_recipe

out, recipe, *overrides = sys.argv[1:]
steps = []
# Public torch hook: what each optimizer step receives, after the DDP all-reduce and the clipping.
register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(
    [(g["lr"], g["weight_decay"], [p.grad.detach().clone() for p in g["params"]]) for g in opt.param_groups]))
train(load_recipe(recipe, overrides), device="cpu")
if os.environ.get("RANK", "0") == "0":
    torch.save(steps, out)
"""
U = 2.0 ** -24  # float32 unit roundoff


def _one_and_two(tmp_path: Path, recipe: Path, common: list[str], batch: int) -> tuple[Path, Path, list, list]:
    """The driver on 1 process x batch ``2 batch`` and on 2 gloo processes x ``batch``: output folders and the
    (lr, weight decay, gradients) of every optimizer step of each."""
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    one, two = tmp_path / "one", tmp_path / "two"
    res = _run([sys.executable, str(driver), str(tmp_path / "one.pt"), str(recipe), *common,
                f"batch_size={2 * batch}", f"output_dir={one}"])
    assert res.returncode == 0, res.stderr[-2000:]
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                str(driver), str(tmp_path / "two.pt"), str(recipe), *common, f"batch_size={batch}",
                f"output_dir={two}"])
    assert res.returncode == 0, res.stderr[-3000:]
    return one, two, torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    """2 gloo processes x batch 8 against 1 process x batch 16: same gradients, losses and weights.

    Plain SGD: Adam divides each gradient by its own running size, so float noise in a gradient near
    zero becomes a step of about ±lr and the weights of the two runs are not comparable element-wise.
    """
    from vitlens_cli.training.loop import optimizer_groups

    steps = 3
    common = ["data.options.size=96", "log_every=1", "optim.warmup_steps=2", f"max_steps={steps}",
              f"save_every={steps}", "optim.name=sgd", "optim.lr=0.05"]
    one, two, g1, g2 = _one_and_two(tmp_path, RECIPE, common, 8)

    # Both runs compute the same sums over the same global batch, only in another order (per-rank
    # halves, an all-reduce, BatchNorm statistics from shared sums). Reordering an n-term float32 sum
    # changes it by at most (n-1)u of the sum of its terms' sizes (Higham, Accuracy and Stability of
    # Numerical Algorithms, 4.2); the longest sums here run over every point of every group of the
    # global batch (the tokenizer's first layer), so the relative tolerance is n u with that n, taking a
    # tensor's gradient norm as the size of its terms (a gradient cancelling to near zero would need more). A real
    # fault (a rank reading other items, a missing all-reduce or BatchNorm sync, a wrong gradient
    # scale) moves gradients by percents, not by 1e-4. That holds exactly for step 1 (same weights);
    # from step 2 on the weights also differ by the earlier steps' drift, which stable SGD
    # (lr * largest Hessian eigenvalue < 2) turns into at most twice that relative gradient change,
    # so step t is allowed e_t = tau + 2 (e_1 + ... + e_{t-1}) = 3^(t-1) tau.
    recipe = load_recipe(RECIPE, common + ["batch_size=16"])
    lens = recipe.model.lens
    tau = 16 * lens.num_group * lens.group_size * U
    assert len(g1) == len(g2) == steps
    for t in range(steps):
        for (lr1, wd1, grads1), (lr2, wd2, grads2) in zip(g1[t], g2[t], strict=True):
            assert (lr1, wd1) == (lr2, wd2)
            for a, b in zip(grads1, grads2, strict=True):
                assert (a - b).norm() <= 3 ** t * tau * a.norm(), \
                    f"step {t + 1}: gradients differ by {float((a - b).norm() / a.norm()):.2e}"

    rows = lambda d: list(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))  # noqa: E731
    for r1, r2 in zip(rows(one), rows(two), strict=True):
        assert r1["step"] == r2["step"] and r1["lr"] == r2["lr"]
        assert r1["loss"] == pytest.approx(r2["loss"], rel=tau)

    # End to end, derived from the gradients the two runs actually used. SGD with (coupled) weight decay
    # wd: w' = (1 - lr wd) w - lr g, so the runs' difference obeys d' = (1 - lr wd) d - lr (g1 - g2) with
    # 0 <= 1 - lr wd <= 1, hence |w1 - w2| <= sum_t lr_t |g1_t - g2_t| per element in exact arithmetic.
    # Each update also rounds (wd w, g + wd w, lr (g + wd w), w - that): at most 3u (|w_t| + lr |g + wd w_t|)
    # per step and run, with |w_t| <= (1 + lr wd)^t (|w_0| + sum_s lr_s |g_s|).
    model = build_training_model(recipe).model
    start = {n: v.clone() for n, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer_groups(model, recipe.optim) for p in g["params"]]
    per_step = [[(lr, wd, x, y) for (lr, wd, xs), (_, _, ys) in zip(g1[t], g2[t]) for x, y in zip(xs, ys)]
                for t in range(steps)]
    growth = max((1 + lr * wd) ** steps for lr, wd, _, _ in per_step[0])
    a, b = _final(one), _final(two)
    bound = {}
    for i, name in enumerate(order):
        w_big = growth * (start[name].abs() + sum(lr * x.abs() for lr, _, x, _ in (s[i] for s in per_step)))
        bound[name] = sum(lr * (x - y).abs() + 2 * 3 * U * (w_big + lr * (x.abs() + wd * w_big))
                          for lr, wd, x, y in (s[i] for s in per_step))
    for name in a:
        if name in bound:
            assert ((a[name] - b[name]).abs() <= bound[name]).all(), f"{name}: {(a[name] - b[name]).abs().max():.2e}"
        elif "running_" in name:  # BatchNorm statistics: the same reordered sums as the gradients
            assert (a[name] - b[name]).norm() <= 3 ** (steps - 1) * tau * a[name].norm(), name
        else:
            assert torch.equal(a[name], b[name]), f"frozen {name} differs"
    # The check is not vacuous: the tolerance is under 1 % of what training moved the weights.
    moved = sum(float((a[n] - start[n]).abs().sum()) for n in bound)
    assert moved > 100 * sum(float(v.sum()) for v in bound.values())


def test_accumulation_and_periodic_validation(tmp_path):
    import vitlens_cli
    from vitlens_cli.data.benchmarks import open_source
    from vitlens_cli.data.meta import templates
    from vitlens_cli.data.synthetic import write_folder
    from vitlens_cli.evaluation.runner import evaluate
    from vitlens_cli.training.loop import train

    heldout = write_folder(tmp_path / "heldout", per_class=2, seed=99)
    seen = []
    recipe = load_recipe(RECIPE, SMALL + ["grad_accum=2", "max_steps=2", "save_every=2",
                                          "validation.every=1", f"validation.benchmark={heldout}",
                                          f"output_dir={tmp_path / 'run'}"])
    result = train(recipe, device="cpu", on_step=seen.append)
    assert [log.step for log in seen] == [1, 2]
    # 12 held-out shapes: every accuracy is a whole number of them
    assert all(log.val_top1 is not None and (12 * log.val_top1).is_integer() for log in seen)
    # the last validation is the zero-shot accuracy of the weights the run ends with
    final = vitlens_cli.load_model(str(tmp_path / "run" / "final"))
    again = evaluate(final, open_source(str(heldout), None), templates(), workers=0, cache_dir=tmp_path / "cache")
    assert again.metrics.top1 == seen[-1].val_top1
    assert seen[0].samples_per_s > 0 and result.steps == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_top1"] for r in rows] == [log.val_top1 for log in seen]
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_frozen_towers_encode_at_the_recipe_s_precision(tmp_path, monkeypatch):
    from vitlens_cli.training import loop

    dtypes = []

    class Recording(loop.FeatureCache):
        def __init__(self, encode, **kw):
            def spy(items):
                out = encode(items)
                dtypes.append(out.dtype)
                return out
            super().__init__(spy, **kw)

    monkeypatch.setattr(loop, "FeatureCache", Recording)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        dtypes.clear()
        loop.train(load_recipe(RECIPE, SMALL + ["max_steps=1", "validation.every=null", f"precision={precision}",
                                                f"output_dir={tmp_path / precision}"]), device="cpu")
        assert dtypes and set(dtypes) == {dtype}, precision


class _Stop(Exception):
    pass


def _small(tmp_path: Path, name: str, *extra: str):
    return load_recipe(RECIPE, SMALL + [f"output_dir={tmp_path / name}", *extra])


def test_resume_latest_passes_over_a_damaged_checkpoint(tmp_path):
    from vitlens_cli.training.loop import train

    base = ["max_steps=4", "save_every=1"]
    train(_small(tmp_path, "whole", *base), device="cpu")

    def stop_after_3(log):
        if log.step == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train(_small(tmp_path, "cut", *base), device="cpu", on_step=stop_after_3)
    bad = tmp_path / "cut" / "checkpoints" / "step-00000003.pt"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor: torch.load alone would read it as a wrong weight
    bad.write_bytes(bytes(data))
    warnings: list[str] = []
    train(_small(tmp_path, "cut", *base), resume="latest", device="cpu", on_warning=warnings.append)
    assert len(warnings) == 1 and str(bad) in warnings[0] and "step-00000002.pt" in warnings[0]
    a, b = _final(tmp_path / "whole"), _final(tmp_path / "cut")
    for name in a:  # steps 3 and 4 were redone from step 2's checkpoint
        assert torch.equal(a[name], b[name]), name


def test_resume_refuses_another_lens_shape(tmp_path):
    from vitlens_cli.errors import CheckpointError
    from vitlens_cli.training.loop import train

    train(_small(tmp_path, "run", "max_steps=1"), device="cpu")
    with pytest.raises(CheckpointError, match=r"step-00000001\.pt: trained with another lens \(model\.lens\.npoints"):
        train(_small(tmp_path, "run", "max_steps=2", "model.lens.npoints=256"), resume="latest", device="cpu")
    with pytest.raises(CheckpointError, match=r"different trainable set"):
        train(_small(tmp_path, "run", "max_steps=2", "model.unlock.cls=true"), resume="latest", device="cpu")


def test_param_groups_scale_their_lr(tmp_path):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from vitlens_cli.errors import ConfigError
    from vitlens_cli.training.loop import train

    seen: list[dict] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append({g["group"]: g["lr"] for g in opt.param_groups}))
    try:
        train(_small(tmp_path, "pg", "max_steps=2", "optim.param_groups.perceiver.params=[point.perceiver.*]",
                     "optim.param_groups.perceiver.lr_scale=0.25"), device="cpu")
    finally:
        handle.remove()
    assert len(seen) == 2
    for lrs in seen:
        assert set(lrs) == {"perceiver", "default"} and lrs["default"] > 0
        assert lrs["perceiver"] == pytest.approx(0.25 * lrs["default"], rel=1e-12)
    with pytest.raises(ConfigError, match=r"optim\.param_groups\.blocks\.params: point\.transformer\.\* match no"):
        train(_small(tmp_path, "pg2", "max_steps=1", "optim.param_groups.blocks.params=[point.transformer.*]"),
              device="cpu")


# ---------------------------------------------------------------------------------------------
# Every other modality: the same loop over its tower, its plug-in's preprocessing and synthetic data
# ---------------------------------------------------------------------------------------------

MODALITIES = ("depth", "audio", "tactile", "eeg")
TINY_SMALL = ["data.options.size=16", "batch_size=8", "log_every=1", "optim.warmup_steps=1", "data.workers=0",
              "validation.every=null"]


def _tiny(modality: str) -> Path:
    return REPO / "vitlens_cli" / "recipes" / f"tiny-{modality}-cpu.yaml"


@pytest.mark.parametrize("modality", MODALITIES)
def test_gradients_reach_only_the_trainable_set_of_every_modality(modality):
    from vitlens_cli.training.data import TrainExamples, collate, make_source
    from vitlens_cli.training.recipe import model_config

    recipe = load_recipe(_tiny(modality), TINY_SMALL)
    tm = build_training_model(recipe)
    examples = TrainExamples(make_source(recipe.data, recipe.seed, modality), model_config(recipe), recipe)
    batch = collate([examples[(0, i)] for i in range(4)])
    lens = torch.nn.functional.normalize(tm.model.tower(modality)(batch["input"]), dim=-1)
    text = torch.nn.functional.normalize(tm.model.encode_text(batch["text"]), dim=-1)
    (tm.model.logit_scale.exp() * lens @ text.T).logsumexp(-1).mean().backward()
    assert tm.trainable and all(n.startswith((f"{modality}.", "logit_scale")) for n in tm.trainable)
    for name, p in tm.model.named_parameters():
        assert (p.grad is not None) == (name in tm.trainable), name
    lens_attr = tm.model.tower(modality).lens_attr
    assert any(n.startswith(f"{modality}.{lens_attr}.") for n in tm.trainable)


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_modality_trains_its_lens_and_leaves_frozen_weights_bit_identical(tmp_path, modality):
    from typer.testing import CliRunner

    from vitlens_cli.cli.app import app
    from vitlens_cli.data.signals import write_folder
    from vitlens_cli.training import checkpoint as ckpt
    from vitlens_cli.training.loop import train

    out = tmp_path / "run"
    recipe = load_recipe(_tiny(modality), TINY_SMALL + ["max_steps=2", "save_every=2", f"output_dir={out}"])
    tm = build_training_model(recipe)
    start = {k: v.clone() for k, v in tm.model.state_dict().items()}
    train(recipe, device="cpu")
    end = _final(out)
    assert set(end) == set(start) and not any(k.startswith(("point.", "image.")) for k in end)
    trainable = set(json.loads((out / "trainable.json").read_text()))
    assert trainable == set(tm.trainable)
    for name, before in start.items():
        if name not in trainable:
            assert torch.equal(end[name], before), f"frozen {name} changed"
    lens_attr = tm.model.tower(modality).lens_attr
    changed = [n for n in trainable if not torch.equal(end[n], start[n])]
    assert any(n.startswith(f"{modality}.{lens_attr}.") for n in changed)
    # the freeze policy travels with every checkpoint, as for 3D
    state = ckpt.load(out / "checkpoints" / "step-00000002.pt")
    assert state["trainable"] == tm.trainable and state["recipe"]["model"]["modality"] == modality
    assert state["recipe"]["model"]["unlock"] == json.loads(json.dumps(recipe.to_dict()["model"]["unlock"]))

    # the exported lens embeds a file of its modality, and evaluates on a captions CSV
    held = write_folder(tmp_path / "held", modality, per_class=1, seed=5, template=recipe.data.options.templates[0])
    first = next(p for p in sorted(held.rglob("*")) if p.is_file() and p.name != "captions.csv")
    runner = CliRunner()
    res = runner.invoke(app, ["embed", str(first), "--modality", modality, "--checkpoint", str(out / "final"),
                              "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["embedded"] == 1 and summary["dim"] == 32 and summary["model"] == f"tiny-{modality}-cpu"
    res = runner.invoke(app, ["eval", str(held / "captions.csv"), "--checkpoint", str(out / "final"),
                              "--modality", modality, "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_a_captions_csv_of_your_own_files_trains_a_non_3d_lens(tmp_path):
    """data.kind captions: a CSV `path,caption[,image]` of EEG files, read by the EEG plug-in."""
    from vitlens_cli.data.signals import write_folder
    from vitlens_cli.errors import ConfigError
    from vitlens_cli.training.loop import train

    from omegaconf import OmegaConf

    held = write_folder(tmp_path / "files", "eeg", per_class=2, seed=1, template="an EEG recording of {}.")
    own = OmegaConf.to_container(OmegaConf.load(_tiny("eeg")))
    own["data"] = {"kind": "captions", "root": str(held / "captions.csv"), "workers": 0}
    own["validation"] = {}
    path = tmp_path / "own.yaml"
    path.write_text(OmegaConf.to_yaml(own))
    overrides = ["batch_size=8", "max_steps=1", f"output_dir={tmp_path / 'run'}"]
    recipe = load_recipe(path, overrides)
    result = train(recipe, device="cpu")
    from vitlens_cli.training.data import Schedule

    rows = (held / "captions.csv").read_text().splitlines()[1:]
    drawn = {rows[i].split(",")[1] for _, i in Schedule(len(rows), 8, 1, 1, recipe.seed).indices(0, 0, 0)}
    assert result.steps == 1 and result.features_encoded == len(drawn)  # one text feature per caption drawn
    assert set(_final(tmp_path / "run")) == set(build_training_model(recipe).model.state_dict())
    with pytest.raises(ConfigError, match=r"data\.root: .*nope\.csv: no such CSV file"):
        train(load_recipe(path, overrides + [f"data.root={tmp_path / 'nope.csv'}"]), device="cpu")


# Every non-3D tower (3D has its own test above); each pair of runs costs ~30 s of process start-up on 2 cores.
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
@pytest.mark.parametrize("modality", ["eeg", "audio", "depth", "tactile"])
def test_two_gloo_processes_equal_one_process_for_a_non_3d_tower(tmp_path, modality):
    """A non-3D tower (no BatchNorm): 2 gloo processes x batch 4 against 1 process x batch 8, plain SGD, 2 steps.

    As in the 3D test: the runs differ only in the order of float32 sums over the global batch, at most
    n u relative with n the longest sum over the batch: a weight applied at every position of every item
    (the lens's patch or window conv at each of its positions, a ViT or Perceiver weight at each token),
    growing 3x per step through the earlier steps' drift; weights then differ by at most
    sum_t lr |g1_t - g2_t| plus each update's rounding (3u of the weight and of the step, per run)."""
    from vitlens_cli.training.data import TrainExamples, make_source
    from vitlens_cli.training.recipe import model_config

    steps, lr = 2, 0.05
    common = ["data.options.size=16", "log_every=1", "optim.warmup_steps=1", f"max_steps={steps}",
              f"save_every={steps}", "optim.name=sgd", f"optim.lr={lr}", "data.workers=0", "validation.every=null"]
    recipe = _tiny(modality)
    one, two, g1, g2 = _one_and_two(tmp_path, recipe, common, 4)
    loaded = load_recipe(recipe, common + ["batch_size=8"])
    tower = build_training_model(loaded).model.tower(modality)
    example = TrainExamples(make_source(loaded.data, loaded.seed, modality), model_config(loaded), loaded)[(0, 0)]
    with torch.no_grad():
        positions = tower.lens(torch.from_numpy(example["input"])[None]).shape[1]
    tau = 8 * max(positions, tower.num_tokens + 1) * U
    assert len(g1) == len(g2) == steps
    for t in range(steps):
        for (lr1, _, grads1), (lr2, _, grads2) in zip(g1[t], g2[t], strict=True):
            assert lr1 == lr2
            for a, b in zip(grads1, grads2, strict=True):
                assert (a - b).norm() <= 3 ** t * tau * a.norm(), \
                    f"step {t + 1}: gradients differ by {float((a - b).norm() / a.norm()):.2e}"
    rows = lambda d: list(map(json.loads, (d / "metrics.jsonl").read_text().splitlines()))  # noqa: E731
    for r1, r2 in zip(rows(one), rows(two), strict=True):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=tau)
    start = build_training_model(loaded)
    a, b = _final(one), _final(two)
    trainable = set(start.trainable)
    for name, before in start.model.state_dict().items():
        if name not in trainable:
            assert torch.equal(a[name], before) and torch.equal(b[name], before), f"frozen {name} changed"
    diff = sum(float((a[n] - b[n]).abs().sum()) for n in trainable)
    grad_gap = sum(lr1 * float((x - y).abs().sum()) for t in range(steps)
                   for (lr1, _, xs), (_, _, ys) in zip(g1[t], g2[t]) for x, y in zip(xs, ys))
    size = sum(float(a[n].abs().sum()) + float(b[n].abs().sum()) for n in trainable)
    moved = sum(float((a[n] - start.model.state_dict()[n]).abs().sum()) for n in trainable)
    assert diff <= grad_gap + steps * 6 * U * (size + moved)
    assert moved > 100 * (grad_gap + steps * 6 * U * (size + moved))  # the check is far from vacuous


def test_heldout_validation_of_a_non_3d_lens_uses_its_modality_s_prompts(monkeypatch):
    """No data.options.templates: the EEG held-out set is ranked on the official EEG prompts (photo_3), not ULIP's."""
    from vitlens_cli.evaluation import zeroshot
    from vitlens_cli.training.loop import heldout_top1
    from vitlens_cli.training.recipe import model_config

    seen = []

    def classifier(model, classes, prompts):
        seen.append(list(prompts))
        return torch.zeros(len(classes), 32)

    monkeypatch.setattr(zeroshot, "zeroshot_classifier", classifier)
    recipe = load_recipe(_tiny("eeg"), TINY_SMALL + ["data.options.templates=null", "validation.limit=6"])
    heldout_top1(build_training_model(recipe).model, recipe, model_config(recipe))
    assert seen == [["a photo of {}.", "an image of {}.", "a picture of {}."]]
