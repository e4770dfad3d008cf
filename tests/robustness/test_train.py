"""`vitlens train` given wrong recipes, overrides, data roots and checkpoints: one line naming the key or file,
exit 2, nothing written. Most cases fail at validation; the resume cases share one tiny trained run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .harness import Snapshot, assert_clean_failure, assert_no_temp_files, invoke

# A lens small enough that a valid run of two steps takes seconds.
SMALL = ["data.options.size=16", "batch_size=4", "max_steps=2", "save_every=1", "log_every=1",
         "optim.warmup_steps=1", "model.lens.npoints=256", "model.lens.num_group=16", "model.lens.group_size=8"]


def _train(tmp_path: Path, *args: str, recipe: str = "tiny-cpu", out: Path | None = None):
    out = out or tmp_path / "run"
    return invoke(["train", "--recipe", recipe, *SMALL, f"output_dir={out}", *args], timeout=120)


# (override, what the error line must name)
BAD_OVERRIDES = {
    # wrong types, every kind of field
    "int-word": ("batch_size=ten", "batch_size"),
    "int-seed-word": ("seed=abc", "seed"),
    "int-float": ("max_steps=1.5", "max_steps"),
    "int-null": ("seed=null", "seed"),
    "float-word": ("optim.lr=fast", "optim.lr"),
    "tuple-short": ("optim.betas=[0.9]", "optim.betas"),
    "tuple-words": ("optim.betas=[a,b]", "optim.betas"),
    "tuple-scalar": ("data.augment.scale=0.5", "data.augment.scale"),
    "bool-number": ("cache_features=2", "cache_features"),
    "bool-word": ("tensorboard=maybe", "tensorboard"),
    "choice-precision": ("precision=fp8", "precision"),
    "choice-schedule": ("optim.schedule=linear", "optim.schedule"),
    "choice-optimizer": ("optim.name=lion", "optim.name"),
    "choice-data-kind": ("data.kind=pointclouds", "data.kind"),
    "str-list": ("name=[1,2]", "name"),
    "section-scalar": ("model=3", "model"),
    "unlock-int-word": ("model.unlock.first_blocks=two", "model.unlock.first_blocks"),
    "lens-int-word": ("model.lens.npoints=many", "model.lens.npoints"),
    "perceiver-int-list": ("model.lens.perceiver.depth=[1]", "model.lens.perceiver.depth"),
    "options-int-word": ("data.options.size=big", "data.options.size"),
    "options-list-scalar": ("data.options.classes=box", "data.options.classes"),
    "options-scalar": ("data.options=3", "data.options"),
    "param-group-float-word": ("optim.param_groups.x.lr_scale=half", "optim.param_groups.x.lr_scale"),
    "param-groups-scalar": ("optim.param_groups=3", "optim.param_groups"),
    # unknown keys at every level
    "unknown-top": ("learning_rate=0.1", "learning_rate"),
    "unknown-lens": ("model.lens.num_grup=8", "model.lens.num_grup"),
    "unknown-perceiver": ("model.lens.perceiver.dpth=2", "model.lens.perceiver.dpth"),
    "unknown-vit": ("model.lens.vit.widht=8", "model.lens.vit.widht"),
    "unknown-unlock": ("model.unlock.everything=true", "model.unlock.everything"),
    "unknown-optim": ("optim.backbone_lr_scale=0.1", "optim.backbone_lr_scale"),
    "unknown-augment": ("data.augment.jitter=0.1", "data.augment.jitter"),
    "unknown-option": ("data.options.sizes=10", "data.options.sizes"),
    "unknown-validation": ("validation.freq=10", "validation.freq"),
    "unknown-param-group-key": ("optim.param_groups.x.lrs=1", "optim.param_groups.x.lrs"),
    # invalid values
    "max-steps-negative": ("max_steps=-1", "max_steps"),
    "max-steps-zero": ("max_steps=0", "max_steps"),
    "epochs-zero": ("epochs=0", "epochs"),
    "save-every-zero": ("save_every=0", "save_every"),
    "log-every-zero": ("log_every=0", "log_every"),
    "batch-size-zero": ("batch_size=0", "batch_size"),
    "grad-accum-negative": ("grad_accum=-2", "grad_accum"),
    "seed-negative": ("seed=-1", "seed"),
    "lr-negative": ("optim.lr=-1e-3", "optim.lr"),
    "lr-zero": ("optim.lr=0", "optim.lr"),
    "eps-zero": ("optim.eps=0", "optim.eps"),
    "beta-above-one": ("optim.betas=[0.9,1.5]", "optim.betas"),
    "weight-decay-negative": ("optim.weight_decay=-0.1", "optim.weight_decay"),
    "grad-clip-zero": ("optim.grad_clip=0", "optim.grad_clip"),
    "momentum-one": ("optim.momentum=1", "optim.momentum"),
    "warmup-negative": ("optim.warmup_steps=-5", "optim.warmup_steps"),
    "dropout-above-one": ("data.augment.dropout=1.5", "data.augment.dropout"),
    "scale-reversed": ("data.augment.scale=[2,1]", "data.augment.scale"),
    "workers-negative": ("data.workers=-1", "data.workers"),
    "lens-zero-groups": ("model.lens.num_group=0", "model.lens.num_group"),
    "lens-groups-exceed-points": ("model.lens.npoints=8", "model.lens"),
    "unknown-spec": ("model.spec=nope", "model.spec"),
    "one-class": ("data.options.classes=[box]", "data.options.classes"),
    "unknown-class": ("data.options.classes=[box,blob]", "data.options.classes"),
    "template-without-slot": ("data.options.templates=[a shape]", "data.options.templates"),
    "validation-without-benchmark": ("validation.every=5", "validation.benchmark"),
    "pretrained-without-model": ("model.clip_pretrained=laion2b", "model.clip_pretrained"),
    "param-group-no-patterns": ("optim.param_groups.x.lr_scale=0.5", "optim.param_groups.x.params"),
    "param-group-zero-scale": ("optim.param_groups.x={params: [point.*], lr_scale: 0}", "optim.param_groups.x.lr_scale"),
    "logit-scale-max-below-init": ("logit_scale_max=1", "logit_scale_max"),
    "param-group-matches-nothing": ("optim.param_groups.x.params=[nothing.*]", "optim.param_groups.x.params"),
    # override syntax and interpolation
    "no-equals": ("max_steps", "max_steps"),
    "empty-key": ("=5", "=5"),
    "unclosed-list": ("optim.betas=[0.9", "optim.betas"),
    "missing-interpolation": ("output_dir=${nope}", "output_dir"),
}


@pytest.mark.parametrize("override,name", BAD_OVERRIDES.values(), ids=BAD_OVERRIDES.keys())
def test_bad_override(tmp_path, override, name):
    outcome = _train(tmp_path, override)
    assert_clean_failure(outcome, exit_code=2, names=[name])
    assert not (tmp_path / "run").exists()


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


BAD_RECIPE_FILES = {
    "invalid-yaml": b"name: x\noptim: [unclosed\n",
    "top-level-list": b"- name: x\n- seed: 1\n",
    "top-level-scalar": b"just some text\n",
    "not-utf8": b"name: caf\xe9\xff\n",
    "nul-bytes": b"name: x\x00\n",
    "duplicate-key": b"seed: 1\nseed: 2\n",
    "python-tag": b"name: !!python/object/apply:builtins.open ['MARKER', 'w']\n",
    "unknown-key-in-file": b"seed: 1\nlearning_rate: 0.1\n",
    "wrong-type-in-file": b"batch_size: ten\n",
    "unknown-nested-key-in-file": b"optim:\n  lr: 1.0e-4\n  backbone_lr_scale: 0.1\n",
}


@pytest.mark.parametrize("content", BAD_RECIPE_FILES.values(), ids=BAD_RECIPE_FILES.keys())
def test_bad_recipe_file(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)  # a payload that ran would leave MARKER here
    recipe = _write(tmp_path / "bad.yaml", content)
    outcome = invoke(["train", "--recipe", str(recipe), f"output_dir={tmp_path / 'run'}"])
    assert_clean_failure(outcome, exit_code=2, names=[str(recipe)])
    assert not (tmp_path / "MARKER").exists() and not (tmp_path / "run").exists()


def test_recipe_is_a_folder(tmp_path):
    outcome = invoke(["train", "--recipe", str(tmp_path)])
    assert_clean_failure(outcome, exit_code=2, names=[str(tmp_path), "folder"])


def test_missing_recipe_file(tmp_path):
    outcome = invoke(["train", "--recipe", str(tmp_path / "nope.yaml")])
    assert_clean_failure(outcome, exit_code=2, names=[str(tmp_path / "nope.yaml")])


def test_unknown_recipe_name():
    outcome = invoke(["train", "--recipe", "no-such-recipe"])
    assert_clean_failure(outcome, exit_code=2, names=["no-such-recipe", "tiny-cpu"])


def test_unknown_modality():
    assert_clean_failure(invoke(["train", "--modality", "smell"]), exit_code=2, names=["--modality", "smell"])


def test_fp16_on_cpu_is_refused_before_any_step(tmp_path):
    outcome = _train(tmp_path, "precision=fp16")
    assert_clean_failure(outcome, exit_code=2, names=["fp16", "CUDA"])
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_device(tmp_path):
    assert_clean_failure(_train(tmp_path, "--device", "tpu"), exit_code=2, names=["--device", "tpu"])


# data kinds whose root is missing, absent or of the wrong sort
@pytest.mark.parametrize("kind", ["ulip-shapenet", "ulip2-objaverse", "openshape", "captions"])
def test_data_kind_without_root(tmp_path, kind):
    assert_clean_failure(_train(tmp_path, f"data.kind={kind}", "data.options=null"), exit_code=2, names=["data.root"])


@pytest.mark.parametrize("kind", ["ulip-shapenet", "ulip2-objaverse", "openshape", "captions"])
def test_data_root_missing(tmp_path, kind):
    root = tmp_path / "nowhere" / "data"
    outcome = _train(tmp_path, f"data.kind={kind}", "data.options=null", f"data.root={root}")
    assert_clean_failure(outcome, exit_code=2, names=["data.root", str(root)])
    assert not (tmp_path / "run").exists()


def test_captions_root_is_a_folder(tmp_path):
    outcome = _train(tmp_path, "data.kind=captions", "data.options=null", f"data.root={tmp_path}")
    assert_clean_failure(outcome, exit_code=2, names=["data.root", "CSV file"])


def test_openshape_split_json_missing(tmp_path):
    split = tmp_path / "meta" / "train.json"
    outcome = _train(tmp_path, "data.kind=openshape", f"data.root={tmp_path}", "data.options=null",
                     f"data.options.split_json={split}")
    assert_clean_failure(outcome, exit_code=2, names=[str(split)])


def test_options_of_another_kind(tmp_path):
    csv = _write(tmp_path / "c.csv", "path,caption\n")
    outcome = _train(tmp_path, "data.kind=captions", f"data.root={csv}")  # SMALL sets data.options.size
    assert_clean_failure(outcome, exit_code=2, names=["data.options.size", "captions"])


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-step run with checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("trained") / "run"
    outcome = invoke(["train", "--recipe", "tiny-cpu", *SMALL, f"output_dir={out}"], timeout=300)
    assert outcome.exit_code == 0, outcome.stderr
    return out


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _resume(run: Path, resume: str, *args: str):
    return invoke(["train", "--recipe", "tiny-cpu", *SMALL, f"output_dir={run}", "max_steps=3", *args,
                   "--resume", resume], timeout=120)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _pickle_payload(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"format": "vitlens-train/1", "step": 1, "model": _Payload(marker)}, path)
    return path


def test_resume_latest_without_checkpoints(tmp_path):
    outcome = _resume(tmp_path / "fresh", "latest")
    assert_clean_failure(outcome, exit_code=2, names=[str(tmp_path / "fresh" / "checkpoints")])


def test_resume_missing_path(run_copy):
    snap = Snapshot(run_copy)
    outcome = _resume(run_copy, str(run_copy / "nope.pt"))
    assert_clean_failure(outcome, exit_code=2, names=[str(run_copy / "nope.pt")])
    snap.assert_unchanged()


def test_resume_path_is_a_folder(run_copy):
    outcome = _resume(run_copy, str(run_copy / "checkpoints"))
    assert_clean_failure(outcome, exit_code=2, names=[str(run_copy / "checkpoints"), "folder"])


def test_resume_random_bytes(run_copy):
    bad = _write(run_copy / "junk.pt", bytes(range(256)) * 40)
    snap = Snapshot(run_copy)
    assert_clean_failure(_resume(run_copy, str(bad)), exit_code=2, names=[str(bad)])
    snap.assert_unchanged()


def test_resume_plain_state_dict_is_not_a_training_checkpoint(run_copy):
    import torch

    other = run_copy / "weights.pt"
    torch.save({"w": torch.zeros(3)}, other)
    assert_clean_failure(_resume(run_copy, str(other)), exit_code=2, names=[str(other), "training checkpoint"])


def test_resume_pickle_payload_is_refused(run_copy, tmp_path):
    marker = tmp_path / "payload-ran"
    bad = _pickle_payload(run_copy / "evil.pt", marker)
    assert_clean_failure(_resume(run_copy, str(bad)), exit_code=2, names=[str(bad), "refused"])
    assert not marker.exists()


def test_resume_explicit_damaged_checkpoint(run_copy):
    bad = run_copy / "checkpoints" / "step-00000002.pt"
    _flip(bad)
    snap = Snapshot(run_copy)
    assert_clean_failure(_resume(run_copy, str(bad)), exit_code=2, names=[str(bad), "sha256"])
    snap.assert_unchanged()
    assert_no_temp_files(run_copy)


def test_resume_latest_every_checkpoint_damaged(run_copy):
    for step in (1, 2):
        _flip(run_copy / "checkpoints" / f"step-{step:08d}.pt")
    outcome = _resume(run_copy, "latest")
    assert_clean_failure(outcome, exit_code=2, names=["step-00000002.pt", "no intact earlier checkpoint"])
    assert not any(ln.startswith("warning:") for ln in outcome.lines)  # nothing was resumed


def test_resume_latest_damaged_falls_back_to_the_previous(run_copy):
    bad = run_copy / "checkpoints" / "step-00000002.pt"
    _flip(bad)
    outcome = _resume(run_copy, "latest")
    assert outcome.exception is None and outcome.exit_code == 0, outcome.stderr
    warnings = [ln for ln in outcome.lines if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "step-00000001.pt" in warnings[0]
    assert not any(ln.startswith("error:") for ln in outcome.lines)
    assert_no_temp_files(run_copy)


def test_resume_latest_pickle_payload_falls_back_and_never_runs(run_copy, tmp_path):
    marker = tmp_path / "payload-ran"
    newest = run_copy / "checkpoints" / "step-00000002.pt"
    _pickle_payload(newest, marker)
    outcome = _resume(run_copy, "latest")
    assert outcome.exit_code == 0, outcome.stderr
    assert any(ln.startswith("warning:") and str(newest) in ln for ln in outcome.lines)
    assert not marker.exists()


@pytest.mark.parametrize("change,name", [
    ("model.lens.npoints=384", "model.lens.npoints"),
    ("model.lens.perceiver.depth=3", "model.lens.perceiver.depth"),
    ("model.unlock.cls=true", "trainable set"),
    ("model.spec=tiny-rgb", "model.spec"),
    ("optim.name=sgd", "optim.name"),
    ("optim.param_groups.p.params=[point.perceiver.*]", "optim.param_groups"),
], ids=["lens-points", "perceiver-depth", "unlock", "spec", "optimizer", "param-groups"])
def test_resume_with_an_incompatible_recipe(run_copy, change, name):
    snap = Snapshot(run_copy)
    outcome = _resume(run_copy, "latest", change)
    assert_clean_failure(outcome, exit_code=2, names=["step-00000002.pt", name])
    snap.assert_unchanged()


def test_resume_past_max_steps(run_copy):
    outcome = invoke(["train", "--recipe", "tiny-cpu", *SMALL, f"output_dir={run_copy}", "max_steps=1",
                      "--resume", "latest"], timeout=120)
    assert_clean_failure(outcome, exit_code=2, names=["max_steps", "step-00000002.pt"])
