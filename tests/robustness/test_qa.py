"""`vitlens qa` with bad shapes, questions, lenses, LLM folders and option values: one clean line each.

Bad shapes are skipped (exit 1) and the good ones still answered; everything else is fatal (exit 2) and is
reported before the (large) model would load where it can be.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from tests.qa.test_qa import build_instructblip, nano_lens, nano_model_config  # noqa: E402
from tests.robustness.harness import assert_clean_failure, assert_no_temp_files, invoke  # noqa: E402
from tests.robustness.test_embed import _fifo, _h5, _loop, _mkdir, _pickle_payload  # noqa: E402

GARBAGE = bytes(np.random.default_rng(5).integers(0, 256, 600, dtype=np.uint8))
FAST = ["--num-beams", "1", "--max-new-tokens", "3", "--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("llm")
    build_instructblip(folder, "llama")
    return folder


@pytest.fixture(scope="module")
def lens(tmp_path_factory) -> Path:
    import torch

    from vitlens_cli.models.checkpoints import save_model
    from vitlens_cli.models.vitlens import ViTLens

    torch.manual_seed(1)
    return save_model(ViTLens(nano_model_config(nano_lens())), tmp_path_factory.mktemp("lens") / "nano")


def _good(folder: Path) -> Path:
    path = folder / "good.npy"
    np.save(path, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    return path


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


BAD_SHAPES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "garbage_npy": lambda d: (_write(d / "g.npy", GARBAGE), "not a .npy file"),
    "missing": lambda d: (d / "nope.ply", "no such file"),
    "fifo": lambda d: (_fifo(d / "pipe.ply"), "named pipe (FIFO)"),
    "symlink_loop": lambda d: (_loop(d / "loop.off"), "symbolic link loop"),
    "empty_ply": lambda d: (_write(d / "e.ply", b""), "empty file"),
    "two_columns": lambda d: (_write(d / "t.xyz", "1 2\n3 4\n"), "(N, 3+)"),
    "h5_with_three_clouds": lambda d: (_h5(d / "s.h5", data=np.zeros((3, 64, 3), np.float32)), "holds 3 clouds"),
    "escape_in_name": lambda d: (_write(d / "x\x1b[2J.npy", GARBAGE), "not a .npy file"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_bad_shape_is_skipped_and_the_good_one_answered(tmp_path, llm, lens, case):
    good = _good(tmp_path)
    bad, fragment = BAD_SHAPES[case](tmp_path)
    outcome = invoke(["qa", good, bad, "what is this object ?", "--llm", llm, "--lens", lens, "--json", *FAST],
                     timeout=120)
    from vitlens_cli.cli.render import plain

    line = assert_clean_failure(outcome, exit_code=1, names=[plain(bad)], prefix="skipped:")
    assert fragment in line
    data = json.loads(outcome.stdout)
    assert [r["file"] for r in data["results"]] == [str(good)] and data["results"][0]["answer"].strip()
    assert [f["path"] for f in data["failed"]] == [str(bad)]
    assert_no_temp_files(tmp_path)


# Each maker returns (arguments after the good file, names the one error line must hold).
FATAL: dict[str, Callable[[Path, Path, Path], tuple[list, list[str]]]] = {
    "questions_missing": lambda d, llm, lens: (["--questions", d / "q.txt"], ["q.txt", "no such file"]),
    "questions_empty": lambda d, llm, lens: (["--questions", _write(d / "q.txt", "\n  \n")], ["holds no questions"]),
    "questions_not_utf8": lambda d, llm, lens: (["--questions", _write(d / "q.txt", b"what \xff\xfe?\n")],
                                                ["not UTF-8 text (byte 0xff at offset 5)"]),
    "questions_folder": lambda d, llm, lens: (["--questions", d], ["not a regular file"]),
    "questions_fifo": lambda d, llm, lens: (["--questions", _fifo(d / "q.fifo")], ["not a regular file"]),
    "questions_huge": lambda d, llm, lens: (["--questions", _write(d / "q.txt", "what ?\n" * 200_000)],
                                            ["more than the 1048576"]),
    "lens_missing": lambda d, llm, lens: (["what ?", "--lens", d / "none.pt", "--llm", llm], ["none.pt"]),
    "lens_garbage": lambda d, llm, lens: (["what ?", "--lens", _write(d / "eva_g14_objaverse.pt", GARBAGE),
                                           "--llm", llm], ["eva_g14_objaverse.pt"]),
    "lens_pickle_payload": lambda d, llm, lens: (["what ?", "--lens", _pickle_payload(d, "eva_g14_objaverse.pt"),
                                                  "--llm", llm],
                                                 ["eva_g14_objaverse.pt"]),
    "llm_empty_folder": lambda d, llm, lens: (["what ?", "--llm", _mkdir(d / "llm"), "--lens", lens],
                                              [str(d / "llm")]),
    "llm_path_missing": lambda d, llm, lens: (["what ?", "--llm", d / "no-llm", "--lens", lens], ["no-llm"]),
    "precision_bad": lambda d, llm, lens: (["what ?", "--precision", "fp8"], ["--precision", "'fp8'"]),
    "precision_fp16_on_cpu": lambda d, llm, lens: (["what ?", "--precision", "fp16"],
                                                   ["--precision", "fp16 needs a CUDA device"]),
    "device_bad": lambda d, llm, lens: (["what ?", "--device", "gpu0"], ["--device", "gpu0"]),
    "num_beams_zero": lambda d, llm, lens: (["what ?", "--num-beams", "0"], ["--num-beams", "0 is outside"]),
    "max_new_tokens_zero": lambda d, llm, lens: (["what ?", "--max-new-tokens", "0"], ["--max-new-tokens"]),
    "temperature_negative": lambda d, llm, lens: (["what ?", "--temperature", "-1"], ["--temperature"]),
    "temperature_nan": lambda d, llm, lens: (["what ?", "--temperature", "nan"], ["--temperature"]),
    "question_holds_image_token": lambda d, llm, lens: (["what <image> is it ?", "--llm", llm, "--lens", lens],
                                                        ["<image>"]),
}


@pytest.mark.parametrize("case", sorted(FATAL))
def test_fatal_qa_input_is_one_error_line(tmp_path, llm, lens, case):
    good = _good(tmp_path)
    args, names = FATAL[case](tmp_path, llm, lens)
    base = [] if "--llm" in map(str, args) else ["--llm", llm, "--lens", lens]
    opts = [o for i, o in enumerate(FAST) if o not in args and (i == 0 or FAST[i - 1] not in args)]
    outcome = invoke(["qa", good, *args, *base, *opts], timeout=120)
    assert_clean_failure(outcome, exit_code=2, names=names)
    assert not (tmp_path / "PWNED").exists()
    assert_no_temp_files(tmp_path)


def test_question_with_markup_and_control_bytes_is_printed_escaped(tmp_path, llm, lens):
    good = _good(tmp_path)
    bad = _write(tmp_path / "bad.npy", GARBAGE)
    question = "what [bold]is[/] this \x1b[31m object ?"
    outcome = invoke(["qa", good, bad, question, "--llm", llm, "--lens", lens, *FAST], timeout=120)
    assert_clean_failure(outcome, exit_code=1, names=[str(bad)], prefix="skipped:")
    assert "what [bold]is[/] this \\x1b[31m object ?" in outcome.stdout
