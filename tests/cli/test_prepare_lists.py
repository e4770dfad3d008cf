"""`vitlens prepare clotho|vggsound --from`: one line per outcome, missing files counted and listed in
presence.csv with the failed-items exit code, a second run says already prepared."""
from __future__ import annotations

from typer.testing import CliRunner

from tests.data.list_releases import clotho_vitlens, vggsound_list, zip_folder
from vitlens_cli.cli.app import app
from vitlens_cli.cli.errors import EXIT_FAILED_ITEMS
from vitlens_cli.data import audio_labels

runner = CliRunner()


def test_prepare_clotho_reports_missing_clips_and_is_idempotent(tmp_path):
    archive = zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip")
    args = ["prepare", "clotho", "--from", str(archive), "--root", str(tmp_path / "root")]
    first = runner.invoke(app, args)
    assert first.exit_code == EXIT_FAILED_ITEMS, first.output
    assert "clotho (test): 3 of 4 listed files found" in first.output
    csv = tmp_path / "root" / "clotho-test" / "presence.csv"
    assert f"missing: 1 listed file(s), the rows with present=0 of {csv}" in first.output
    second = runner.invoke(app, args)
    assert "already prepared: 3 of 4" in second.output


def test_prepare_vggsound_with_every_clip_present_exits_0(tmp_path):
    names = audio_labels.classes("vggsound")
    root = vggsound_list(tmp_path / "v", [("abc_1", 3, names[3])], present={"abc_1"})
    res = runner.invoke(app, ["prepare", "vggsound", "--from", str(root), "--root", str(tmp_path / "root")])
    assert res.exit_code == 0, res.output
    assert "vggsound (val): 1 of 1 listed files found" in res.output


def test_prepare_unknown_list_variant_is_one_error_line(tmp_path):
    res = runner.invoke(app, ["prepare", "clotho", "--variant", "train", "--from", str(tmp_path),
                              "--root", str(tmp_path / "root")])
    assert res.exit_code != 0
    assert "unknown clotho variant 'train' (known: test, val)" in res.output


def test_prepare_imagenet_eeg_says_how_many_trials_the_filter_kept(tmp_path):
    from tests.data.test_imagenet_eeg import write_release

    src = write_release(tmp_path / "src")
    res = runner.invoke(app, ["prepare", "imagenet-eeg", "--from", str(src), "--root", str(tmp_path / "root")])
    assert res.exit_code == 0, res.output
    assert "imagenet-eeg (test): 2 of 4 split trials kept (the official trial-length filter)" in res.output
