"""`vitlens embed` as a hostile and clumsy user runs it: every bad input is one clean line, good items survive.

Batch cases put one bad input beside a good cloud: exit 1, one ``skipped:`` line naming the bad one (with its
reason), the good cloud embedded in a consistent pair. Fatal cases: exit 2, one ``error:`` line, a previous
output pair and the inputs left exactly as they were. No case leaves a temporary file.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.harness import Snapshot, assert_clean_failure, assert_no_temp_files, invoke
from vitlens_cli.atomic import write_pair
from vitlens_cli.embedding import load_embeddings

RNG = np.random.default_rng(11)
GARBAGE = bytes(RNG.integers(0, 256, 700, dtype=np.uint8))


def _npy(path: Path, arr) -> Path:
    np.save(path, arr)
    return path


def _cloud() -> np.ndarray:
    return RNG.standard_normal((300, 3)).astype(np.float32)


def _header_only(path: Path, shape, dtype="<f4", body=b"\0" * 64) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
        fh.write(body)
    return path


def _h5(path: Path, **datasets) -> Path:
    import h5py

    with h5py.File(path, "w") as fh:
        for key, value in datasets.items():
            if isinstance(value, dict):
                fh.create_dataset(key, **value)
            else:
                fh[key] = value
    return path


def _ply_binary(path: Path) -> Path:
    import trimesh

    trimesh.PointCloud(RNG.standard_normal((200, 3))).export(path)
    return path


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _nan(arr: np.ndarray, value: float) -> np.ndarray:
    arr = arr.copy()
    arr[5, 1] = value
    return arr


# Each maker writes one bad input into a folder and returns (path, fragment of the reason).
BAD_FILES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "truncated_npy": lambda d: (_truncate(_npy(d / "t.npy", _cloud()), 300), "truncated: header promises 300 x 3"),
    "truncated_npz": lambda d: (_truncate(_npz(d / "t.npz"), 200), "cannot parse"),
    "truncated_ply_binary": lambda d: (_truncate(_ply_binary(d / "t.ply"), 900), "truncated"),
    "truncated_ply_ascii": lambda d: (_text(d / "t.ply", "ply\nformat ascii 1.0\nelement vertex 50\nproperty float x\n"
                                            "property float y\nproperty float z\nend_header\n0 0 0\n"), "truncated"),
    "truncated_off": lambda d: (_text(d / "t.off", "OFF\n8 12 0\n0 0 0\n1 0 0\n"), "truncated"),
    "truncated_pcd": lambda d: (_text(d / "t.pcd", "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 9\n"
                                      "DATA ascii\n0 0 0\n"), "truncated: header promises 9 points"),
    "truncated_h5": lambda d: (_truncate(_h5(d / "t.h5", data=RNG.standard_normal((2, 64, 3))), 1500),
                               "cannot parse"),
    "garbage_npy": lambda d: (_bytes(d / "g.npy", GARBAGE), "not a .npy file"),
    "garbage_npz": lambda d: (_bytes(d / "g.npz", GARBAGE), "not a .npz file"),
    "garbage_ply": lambda d: (_bytes(d / "g.ply", GARBAGE), "not a PLY file"),
    "garbage_off": lambda d: (_bytes(d / "g.off", GARBAGE), "not an OFF file"),
    "garbage_pcd": lambda d: (_bytes(d / "g.pcd", GARBAGE), "not a PCD file"),
    "garbage_xyz": lambda d: (_bytes(d / "g.xyz", GARBAGE), "not a text file of numbers"),
    "garbage_h5": lambda d: (_bytes(d / "g.h5", GARBAGE), "file signature not found"),
    "garbage_glb": lambda d: (_bytes(d / "g.glb", GARBAGE), "not a GLB file"),
    "garbage_stl": lambda d: (_bytes(d / "g.stl", GARBAGE), "no geometry"),
    "text_words": lambda d: (_text(d / "w.txt", "x y z\nhello world again\n"), "cannot parse"),
    "empty_npy": lambda d: (_bytes(d / "e.npy", b""), "empty file"),
    "empty_ply": lambda d: (_bytes(d / "e.ply", b""), "empty file"),
    "empty_h5": lambda d: (_bytes(d / "e.h5", b""), "empty file"),
    "comments_only_xyz": lambda d: (_text(d / "c.xyz", "# x y z\n"), "input contained no data"),
    "nan_npy": lambda d: (_npy(d / "n.npy", _nan(_cloud(), np.nan)), "NaN or infinite"),
    "inf_npy": lambda d: (_npy(d / "i.npy", _nan(_cloud(), np.inf)), "NaN or infinite"),
    "nan_xyz": lambda d: (_text(d / "n.xyz", "0 0 0\nnan 1 2\n1 1 1\n"), "NaN or infinite"),
    "nan_h5": lambda d: (_h5(d / "n.h5", data=_nan(_cloud(), np.nan)[None]), "NaN or infinite"),
    "nan_pcd_only": lambda d: (_text(d / "n.pcd", "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 2\n"
                                     "DATA ascii\nnan nan nan\nnan nan nan\n"), "contains no points"),
    "overflow_xyz": lambda d: (_text(d / "o.xyz", "0 0 0\n1e300 0 0\n1 2 3\n"), "beyond the float32 range"),
    "complex_npy": lambda d: (_npy(d / "c.npy", _cloud().astype(np.complex64)), "complex numbers"),
    "bool_npy": lambda d: (_npy(d / "b.npy", np.ones((50, 3), bool)), "expected real numbers"),
    "string_npy": lambda d: (_npy(d / "s.npy", np.full((50, 3), "ab")), "expected real numbers"),
    "structured_npy": lambda d: (_npy(d / "r.npy", np.zeros(40, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])),
                                 "expected real numbers"),
    "object_npy_pickle": lambda d: (_npy_obj(d / "p.npy"), "pickled Python objects"),
    "one_dim_npy": lambda d: (_npy(d / "1.npy", np.arange(30, dtype=np.float32)), "got shape (30,)"),
    "two_columns_npy": lambda d: (_npy(d / "2.npy", np.zeros((30, 2), np.float32)), "got shape (30, 2)"),
    "three_dim_npy": lambda d: (_npy(d / "3.npy", np.zeros((2, 30, 3), np.float32)), "got shape (2, 30, 3)"),
    "huge_header_npy": lambda d: (_header_only(d / "h.npy", (10**12, 3)), "claims 1000000000000 points"),
    "huge_header_npz": lambda d: (_npz_header_only(d / "h.npz"), "more than vitlens reads"),
    "huge_header_pcd": lambda d: (_bytes(d / "h.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                                         b"POINTS 1000000000000\nDATA binary\n" + b"\0" * 48),
                                  "claims 1000000000000 points"),
    "huge_header_ply": lambda d: (_bytes(d / "h.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex "
                                         b"1000000000000\nproperty float x\nproperty float y\nproperty float z\n"
                                         b"end_header\n" + b"\0" * 48), "claims 1000000000000 vertex"),
    "huge_hollow_h5": lambda d: (_h5(d / "h.h5", data=dict(shape=(10**6, 10**4, 3), dtype="f4",
                                                             chunks=(1, 1024, 3))), "stores only 0 bytes"),
    "h5_zero_clouds": lambda d: (_h5(d / "z.h5", data=np.zeros((0, 64, 3), np.float32)), "holds no clouds"),
    "h5_no_data_key": lambda d: (_h5(d / "k.h5", points=_cloud()[None]), "no 'data' dataset"),
    "h5_two_dim_data": lambda d: (_h5(d / "2.h5", data=_cloud()), "must be (N, points, 3+)"),
    "npz_unknown_keys": lambda d: (_npz(d / "u.npz", a=_cloud(), b=_cloud()), "no point array among keys"),
    "unsupported_suffix": lambda d: (_text(d / "shape.vox", "1 2 3\n"), "unsupported file type '.vox'"),
    "missing_file": lambda d: (d / "missing.ply", "no such file or folder"),
    "glob_without_match": lambda d: (d / "*.stl", "pattern matches no supported files"),
    "empty_folder": lambda d: (_mkdir(d / "empty"), "folder holds no supported files"),
    "fifo": lambda d: (_fifo(d / "pipe.ply"), "named pipe (FIFO)"),
    "fifo_in_folder": lambda d: (_fifo(_mkdir(d / "sub") / "pipe.npy"), "named pipe (FIFO)"),
    "symlink_loop": lambda d: (_loop(d / "loop.ply"), "symbolic link loop"),
    "symlink_loop_in_folder": lambda d: (_loop(_mkdir(d / "sub") / "loop.off"), "symbolic link loop"),
    "broken_symlink": lambda d: (_broken(d / "broken.ply"), "broken symbolic link"),
    "escape_bytes_in_name": lambda d: (_bytes(d / "bad\x1b[31mred\n.npy", GARBAGE), "not a .npy file"),
    "markup_in_name": lambda d: (_bytes(d / "[bold]x[red].ply", GARBAGE), "not a PLY file"),
}


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **(arrays or {"xyz": _cloud()}))
    return path


def _npz_header_only(path: Path) -> Path:
    member = _header_only(path.with_suffix(".member"), (10**11, 3))
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(member, "xyz.npy")
    member.unlink()
    return path


def _npy_obj(path: Path) -> Path:
    np.save(path, np.array([{"xyz": [1, 2, 3]}], dtype=object), allow_pickle=True)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


def _broken(path: Path) -> Path:
    path.symlink_to(path.parent / "gone.npy")
    return path


def _shown(path: Path) -> str:
    """How a path is printed: control characters as escapes (what cli.render.plain does)."""
    from vitlens_cli.cli.render import plain

    return plain(path)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_skipped_and_the_good_one_embedded(tmp_path, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = _npy(inputs / "good.npy", _cloud())
    bad, fragment = BAD_FILES[case](inputs)
    out = tmp_path / "out" / "e.npy"
    outcome = invoke(["embed", good, bad, "--out", out], timeout=60)
    line = assert_clean_failure(outcome, exit_code=1, names=[_shown(bad)], prefix="skipped:")
    assert fragment in line, line
    saved = load_embeddings(out)
    assert saved.embeddings.shape == (1, 32)
    assert [i["path"] for i in saved.manifest["items"]] == [str(good)]
    assert_no_temp_files(tmp_path)


@contextlib.contextmanager
def _as_another_user() -> Iterator[Path]:
    """A folder and an effective user for whom file permissions hold (root ignores them)."""
    folder = Path(tempfile.mkdtemp(prefix="vitlens-perm-"))
    folder.chmod(0o777)
    if os.geteuid() != 0:
        try:
            yield folder
        finally:
            _chmod_all(folder)
            shutil.rmtree(folder, ignore_errors=True)
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield folder
    finally:
        os.seteuid(0)
        os.setegid(0)
        _chmod_all(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _chmod_all(folder: Path) -> None:
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, d), 0o755)


@pytest.mark.parametrize("case", ["unreadable_file", "unreadable_subfolder", "read_only_out_folder"])
def test_permission_denied(case, tmp_path):
    # The interpreter lives under /root, which nobody cannot read: one run as root first imports every module
    # embed loads lazily (its DataLoader's multiprocessing parts too), whichever tests ran before.
    warm = invoke(["embed", _npy(tmp_path / "warm.npy", _cloud()), "--out", tmp_path / "warm-out.npy"])
    assert warm.exit_code == 0, warm.stderr
    with _as_another_user() as folder:
        good = _npy(folder / "good.npy", _cloud())
        out = folder / "e.npy"
        if case == "unreadable_file":
            bad = _npy(folder / "secret.npy", _cloud())
            bad.chmod(0)
            outcome = invoke(["embed", good, bad, "--out", out])
            assert_clean_failure(outcome, exit_code=1, names=[str(bad), "permission denied"], prefix="skipped:")
            assert load_embeddings(out).embeddings.shape == (1, 32)
        elif case == "unreadable_subfolder":
            sub = folder / "shapes" / "locked"
            sub.mkdir(parents=True)
            _npy(folder / "shapes" / "a.npy", _cloud())
            _npy(sub / "b.npy", _cloud())
            sub.chmod(0)
            outcome = invoke(["embed", folder / "shapes", "--out", out])
            assert_clean_failure(outcome, exit_code=1, names=[str(sub), "cannot read folder (permission denied)"],
                                 prefix="skipped:")
            assert load_embeddings(out).embeddings.shape == (1, 32)
        else:
            ro = folder / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            outcome = invoke(["embed", good, "--out", ro / "e.npy"])
            assert_clean_failure(outcome, exit_code=2, names=[str(ro / "e.npy"), "not writable"])
            assert list(ro.iterdir()) == []
        assert_no_temp_files(folder)


# --------------------------------------------------------------------------- fatal: one error line, nothing touched

def _previous_pair(folder: Path) -> Path:
    out = folder / "prev.npy"
    write_pair(out, lambda p: np.save(open(p, "wb"), np.ones((1, 32), np.float32)), folder / "prev.npy.manifest.json",
               {"output": "prev.npy", "rows": 1, "dim": 32})
    return out


def _pickle_payload(folder: Path, name: str = "vitlens-l14-objaverse.pt") -> Path:
    """A checkpoint whose unpickling would create ``folder/PWNED``: loading must refuse it, running nothing."""
    marker = folder / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = folder / name
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": Payload()}, fh)
    return path


# Each maker returns (args after "embed", names the error line must hold); inputs live in ``d``.
FATAL: dict[str, Callable[[Path, Path], tuple[list, list[str]]]] = {
    "out_is_the_input": lambda d, g: ([g, "--out", g], [str(g), "would overwrite the input"]),
    "out_is_an_input_in_a_folder": lambda d, g: ([d, "--out", g], [str(g), "would overwrite the input"]),
    "out_manifest_is_an_input": lambda d, g: (
        [g, _text(d / "x.npy.manifest.json", "{}"), "--out", d / "x.npy"], ["would overwrite the input"]),
    "out_is_a_folder": lambda d, g: ([g, "--out", _mkdir(d / "o.npy")], ["is a folder"]),
    "out_under_a_file": lambda d, g: ([g, "--out", _text(d / "f", "x") / "sub" / "e.npy"],
                                      ["is a file, not a folder"]),
    "out_wrong_suffix": lambda d, g: ([g, "--out", d / "e.csv"], ["must end in .npy or .parquet"]),
    "up_axis_x": lambda d, g: ([g, "--up-axis", "x"], ["--up-axis", "'x'"]),
    "up_axis_markup": lambda d, g: ([g, "--up-axis", "[bold]y[/]"], ["--up-axis", "[bold]y[/]"]),
    "device_tpu": lambda d, g: ([g, "--device", "tpu"], ["--device", "tpu"]),
    "device_garbage": lambda d, g: ([g, "--device", "cuda:abc"], ["--device", "cuda:abc"]),
    "device_cuda_here": lambda d, g: ([g, "--device", "cuda:7"], ["--device"]),
    "batch_size_zero": lambda d, g: ([g, "--batch-size", "0"], ["--batch-size", "0 is outside"]),
    "batch_size_negative": lambda d, g: ([g, "--batch-size", "-3"], ["--batch-size", "-3 is outside"]),
    "batch_size_huge": lambda d, g: ([g, "--batch-size", "10000000"], ["--batch-size"]),
    "unknown_model": lambda d, g: ([g, "--model", "nope"], ["'nope' is neither a known model"]),
    "model_name_with_markup": lambda d, g: ([g, "--model", "[bold]x[/]\x1b"], ["[bold]x[/]\\x1b"]),
    "checkpoint_missing": lambda d, g: ([g, "--checkpoint", d / "none.pt"], [str(d / "none.pt")]),
    "checkpoint_garbage": lambda d, g: ([g, "--checkpoint", _bytes(d / "vitlens-l14-objaverse.pt", GARBAGE)],
                                        ["vitlens-l14-objaverse.pt"]),
    "checkpoint_unknown_name": lambda d, g: ([g, "--checkpoint", _bytes(d / "mystery.pt", GARBAGE)],
                                             ["mystery.pt"]),
    "checkpoint_pickle_payload": lambda d, g: ([g, "--checkpoint", _pickle_payload(d)], ["vitlens-l14-objaverse.pt"]),
    "checkpoint_empty_folder": lambda d, g: ([g, "--checkpoint", _mkdir(d / "ckpt")], [str(d / "ckpt")]),
    "config_not_json": lambda d, g: ([g, "--checkpoint", _bytes(d / "m.pt", GARBAGE), "--config",
                                      _text(d / "c.json", "{not json")], ["c.json"]),
}


@pytest.mark.parametrize("case", sorted(FATAL))
def test_fatal_input_is_one_error_line_and_touches_nothing(tmp_path, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = _npy(inputs / "good.npy", _cloud())
    args, names = FATAL[case](inputs, good)
    _previous_pair(tmp_path)
    before = Snapshot(tmp_path)
    outcome = invoke(["embed", *args], timeout=60)
    assert_clean_failure(outcome, exit_code=2, names=names)
    before.assert_unchanged()
    assert load_embeddings(tmp_path / "prev.npy").embeddings.shape == (1, 32)
    assert not (inputs / "PWNED").exists()
    assert_no_temp_files(tmp_path)


# --------------------------------------------------------------------------- user text printed as text

def test_markup_and_control_bytes_in_texts_and_names_are_printed_escaped(tmp_path):
    good = _npy(tmp_path / "[bold]odd\x1bname[red].npy", _cloud())
    out = tmp_path / "[red]out[/]" / "e\x07.npy"
    outcome = invoke(["embed", good, "--text", "[/]", "--text", "a [bold]chair[/]\x1b[2J", "--out", out])
    assert outcome.exception is None and outcome.exit_code == 0, outcome.stderr
    assert "\x1b" not in outcome.stdout and "\x07" not in outcome.stdout
    assert "[bold]odd\\x1bname[red]" in outcome.stdout  # the literal name, not styled, ESC shown as an escape
    assert "a [bold]chair[/]\\x1b[2J" in outcome.stdout
    assert load_embeddings(out).embeddings.shape == (1, 32)


def test_a_previous_output_survives_a_run_whose_inputs_all_fail(tmp_path):
    prev = _previous_pair(tmp_path)
    bad = _bytes(tmp_path / "g.ply", GARBAGE)
    before = Snapshot(tmp_path)
    outcome = invoke(["embed", bad, "--out", prev])
    assert_clean_failure(outcome, exit_code=1, names=[str(tmp_path / "g.ply")], prefix="skipped:")
    before.assert_unchanged()


def test_a_new_run_replaces_the_previous_pair_consistently(tmp_path):
    prev = _previous_pair(tmp_path)
    good = _npy(tmp_path / "good.npy", _cloud())
    outcome = invoke(["embed", good, good, "--out", prev])
    assert outcome.exit_code == 0, outcome.stderr
    saved = load_embeddings(prev)
    assert saved.embeddings.shape == (2, 32) and saved.manifest["rows"] == 2
    assert_no_temp_files(tmp_path)
