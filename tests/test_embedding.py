"""The Python API: load_model → prepare_points → encode_points / encode_text, and saved outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vitlens_cli
from vitlens_cli.embedding import embed_files, expand_inputs, save_embeddings
from vitlens_cli.errors import VitlensError
from vitlens_cli.points import PointCloud


def test_api_round_trip():
    model = vitlens_cli.load_model("tiny")
    rng = np.random.default_rng(0)
    cloud = PointCloud(rng.uniform(-3, 5, (5000, 3)))
    pts = vitlens_cli.prepare_points(cloud, model.cfg.preprocess)
    assert pts.shape == (1024, 3)
    assert np.abs(pts.mean(axis=0)).max() < 1e-5
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    with torch.inference_mode():
        raw = model.encode_points(torch.from_numpy(pts)[None])
        unit = model.encode_points(torch.from_numpy(pts)[None], normalize=True)
        text = model.encode_text(["a chair", "a car"], normalize=True)
    assert raw.shape == (1, 32) and text.shape == (2, 32)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(unit, raw / raw.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))


def test_rgb_model_gets_grey_for_uncoloured_clouds():
    model = vitlens_cli.load_model("tiny-rgb")
    pts = vitlens_cli.prepare_points(PointCloud(np.random.default_rng(1).normal(size=(3000, 3))),
                                     model.cfg.preprocess)
    assert pts.shape == (2048, 6)
    assert np.all(pts[:, 3:] == np.float32(0.4))


def test_expand_inputs_reports_missing_and_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    files, failures = expand_inputs([tmp_path / "empty", tmp_path / "nope.ply", str(tmp_path / "*.obj")])
    assert files == []
    assert [f.reason for f in failures] == ["folder holds no supported files", "no such file or folder",
                                           "pattern matches no supported files"]


def test_save_refuses_unknown_suffix_and_leaves_no_temp_files(tmp_path):
    model = vitlens_cli.load_model("tiny")
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(900, 3)).astype(np.float32))
    result = embed_files(model, [tmp_path / "a.npy"])
    with pytest.raises(VitlensError, match="must end in .npy or .parquet"):
        save_embeddings(result, tmp_path / "out.csv")
    out, manifest = save_embeddings(result, tmp_path / "out.npy")
    assert np.load(out).shape == (1, 32)
    assert json.loads(manifest.read_text())["rows"] == 1
    assert not list(tmp_path.glob(".*tmp"))


def test_saved_pair_loads_and_a_mixed_pair_is_refused(tmp_path):
    from vitlens_cli.atomic import OutputError
    from vitlens_cli.embedding import load_embeddings, manifest_path

    model = vitlens_cli.load_model("tiny")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(700, 3)).astype(np.float32))
    one = embed_files(model, [tmp_path / "a.npy"])
    two = embed_files(model, [tmp_path / "a.npy", tmp_path / "b.npy"])
    for suffix in (".npy", ".parquet"):
        out = tmp_path / f"e{suffix}"
        save_embeddings(two, out)
        saved = load_embeddings(out)
        np.testing.assert_array_equal(saved.embeddings, two.embeddings)
        assert [i["path"] for i in saved.manifest["items"]] == [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
        kept = manifest_path(out).read_bytes()
        save_embeddings(one, out)
        manifest_path(out).write_bytes(kept)  # a manifest from another run beside this data file
        with pytest.raises(OutputError, match="does not match its manifest") as err:
            load_embeddings(out)
        assert "\n" not in str(err.value)


def test_expand_inputs_names_loops_pipes_and_unreadable_entries(tmp_path):
    import os

    shapes = tmp_path / "shapes"
    shapes.mkdir()
    np.save(shapes / "a.npy", np.zeros((10, 3), np.float32))
    (shapes / "notes.md").write_text("ignored: not a 3D suffix")
    os.mkfifo(shapes / "pipe.ply")
    (shapes / "loop.off").symlink_to("loop.off")
    (shapes / "linked").symlink_to(shapes, target_is_directory=True)  # a folder loop: not followed
    (tmp_path / "self").symlink_to("self")
    files, failures = expand_inputs([shapes, tmp_path / "self"])
    assert files == [shapes / "a.npy"]
    assert sorted((f.path, f.reason) for f in failures) == sorted([
        (str(shapes / "loop.off"), "symbolic link loop"),
        (str(shapes / "pipe.ply"), "not a regular file (a named pipe (FIFO))"),
        (str(tmp_path / "self"), "symbolic link loop")])


def test_check_output_refuses_inputs_and_unusable_targets(tmp_path):
    from vitlens_cli.atomic import OutputError
    from vitlens_cli.embedding import check_output

    np.save(tmp_path / "a.npy", np.zeros((10, 3), np.float32))
    (tmp_path / "link.npy").symlink_to(tmp_path / "a.npy")
    for out, fragment in [(tmp_path / "a.npy", "would overwrite the input"),
                          (tmp_path / "link.npy", "would overwrite the input"),
                          (tmp_path / "e.txt", "must end in .npy or .parquet"),
                          (tmp_path / "a.npy" / "e.npy", "is a file, not a folder")]:
        with pytest.raises(OutputError, match=fragment):
            check_output(out, [tmp_path])
    assert check_output(tmp_path / "new" / "e.npy", [tmp_path]) == tmp_path / "new" / "e.npy"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_modality_of_follows_the_flag_then_the_extension_then_the_model():
    from vitlens_cli.embedding import AmbiguousModalityError, modality_of
    from vitlens_cli.modalities import ModalityFileError

    assert modality_of("a.flac") == "audio" and modality_of("a.off") == "3d" and modality_of("a.exr") == "depth"
    assert modality_of("a.npy", ["eeg", "depth"]) == "eeg"
    assert modality_of("a.npy", ["image", "depth"]) == "depth"  # image does not read .npy: the next one does
    assert modality_of("a.flac", ["depth"]) == "audio"          # a flag never overrides what reads a suffix
    assert modality_of("a.npy", held=["3d"]) == "3d"            # the model's only tower that reads it
    assert modality_of("a.png", held=["3d", "image"]) == "image"
    with pytest.raises(AmbiguousModalityError, match="could be 3d, depth or eeg"):
        modality_of("a.npy", held=["3d", "depth", "eeg"])
    with pytest.raises(ModalityFileError, match="no tower for any of them") as err:
        modality_of("a.jpg", held=["3d"])
    assert not isinstance(err.value, AmbiguousModalityError)
    with pytest.raises(ModalityFileError, match="unsupported file type '.vox'"):
        modality_of("a.vox", held=["3d"])


def _clouds(folder, count: int) -> list:
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        paths.append(folder / f"c{i}.npy")
        np.save(paths[-1], rng.normal(size=(1500, 3)).astype(np.float32))
    return paths


def test_bf16_rows_stay_close_to_fp32_and_the_precision_is_recorded(tmp_path):
    """Both precisions forced (``auto`` differs between machines): float32 rows, cosine ≥ 0.99 to fp32."""
    model = vitlens_cli.load_model("tiny")
    files = _clouds(tmp_path, 5)
    fp32, bf16 = (embed_files(model, files, precision=p, batch_size=2) for p in ("fp32", "bf16"))
    assert (fp32.settings["precision"], bf16.settings["precision"]) == ("fp32", "bf16")
    assert fp32.embeddings.dtype == bf16.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16.embeddings, axis=1), 1.0, atol=1e-5)  # normalised in fp32
    cosine = (fp32.embeddings * bf16.embeddings).sum(axis=1)
    assert cosine.min() >= 0.99, cosine
    assert not np.array_equal(fp32.embeddings, bf16.embeddings)  # the forward did run in bf16


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_and_is_recorded(tmp_path, monkeypatch, native: bool, expected: str):
    from vitlens_cli import precision

    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: native)
    result = embed_files(vitlens_cli.load_model("tiny"), _clouds(tmp_path, 1), precision="auto")
    assert result.settings["precision"] == expected
    assert result.settings["precision_reason"].startswith("auto: the CPU")


def test_fp16_on_cpu_is_refused_before_any_work(tmp_path):
    from vitlens_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        embed_files(vitlens_cli.load_model("tiny"), _clouds(tmp_path, 1), precision="fp16")


def test_streamed_outputs_match_the_in_memory_path_in_row_groups(tmp_path, monkeypatch):
    """Workers reading, rows written as they come (Parquet in several row groups): the same pair as saving at once."""
    import pyarrow.parquet as pq

    from vitlens_cli import embedding
    from vitlens_cli.embedding import embed_to_file, load_embeddings

    monkeypatch.setattr(embedding, "_ROW_GROUP", 4)
    model = vitlens_cli.load_model("tiny")
    files = _clouds(tmp_path, 9)
    (tmp_path / "bad.ply").write_bytes(b"ply\ngarbage")
    files.insert(3, tmp_path / "bad.ply")
    whole = embed_files(model, files, batch_size=2)
    for suffix in (".npy", ".parquet"):
        progress: list[tuple[int, int]] = []
        result, written = embed_to_file(model, files, tmp_path / f"s{suffix}", batch_size=2, workers=2,
                                        on_progress=lambda done, total: progress.append((done, total)))
        assert written == (tmp_path / f"s{suffix}", tmp_path / f"s{suffix}.manifest.json")
        assert result.embeddings.shape == (0, 32)  # handed to the file, not kept
        saved = load_embeddings(written[0])
        np.testing.assert_array_equal(saved.embeddings, whole.embeddings)
        assert [i["path"] for i in saved.manifest["items"]] == [i.path for i in whole.items]
        assert saved.manifest["failures"] == [{"path": str(tmp_path / "bad.ply"), "reason": whole.failures[0].reason}]
        assert progress[0] == (0, 10) and progress[-1] == (10, 10) and len(progress) == 11
        reference = tmp_path / f"ref{suffix}"
        save_embeddings(whole, reference)
        np.testing.assert_array_equal(load_embeddings(reference).embeddings, saved.embeddings)
    assert pq.ParquetFile(tmp_path / "s.parquet").metadata.num_row_groups == 3  # 9 rows, 4 per group
    assert not list(tmp_path.glob(".*tmp"))


def test_rows_reach_the_sink_in_input_order_as_batches_finish(tmp_path):
    model = vitlens_cli.load_model("tiny")
    files = _clouds(tmp_path, 7)
    calls: list[list[str]] = []
    chunks: list[np.ndarray] = []
    result = embed_files(model, files, batch_size=3,
                         sink=lambda items, rows: (calls.append([i.path for i in items]), chunks.append(rows)))
    assert [len(c) for c in calls] == [3, 3, 1]
    assert [p for c in calls for p in c] == [str(f) for f in files]
    np.testing.assert_array_equal(np.concatenate(chunks), embed_files(model, files, batch_size=3).embeddings)
    assert len(result.items) == 7 and result.embeddings.shape == (0, 32)


def test_nothing_embedded_writes_nothing(tmp_path):
    from vitlens_cli.embedding import embed_to_file

    (tmp_path / "bad.ply").write_bytes(b"ply\ngarbage")
    result, written = embed_to_file(vitlens_cli.load_model("tiny"), [tmp_path / "bad.ply"], tmp_path / "e.npy")
    assert written is None and len(result.failures) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ply"]


def test_a_failing_forward_is_raised_not_reported_as_skipped_files(tmp_path, monkeypatch):
    # Only a --prepared array can be the wrong size for a tower; any other RuntimeError of the forward (out of
    # memory, a device mismatch) is not the files' fault.
    model = vitlens_cli.load_model("tiny")

    def broken(modality, x, **kw):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(model, "encode", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        embed_files(model, _clouds(tmp_path, 2), workers=0)
