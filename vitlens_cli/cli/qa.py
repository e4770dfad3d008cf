"""``vitlens qa``: ask InstructBLIP questions about 3D files through the ViT-Lens 3D lens."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..precision import HELP as PRECISION_HELP
from .errors import EXIT_FAILED_ITEMS, check_device, fail, interruptible, run_or_exit
from .output import QUIET, VERBOSE, output
from .render import plain


MAX_QUESTIONS_BYTES = 1 << 20
MAX_BEAMS = 64
MAX_NEW_TOKENS = 4096


def _read_questions(path: Path) -> list[str]:
    """One question per non-blank line of a regular UTF-8 file (a FIFO would block, a huge file is a mistake)."""
    from ..errors import os_reason

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file; give a text file with one question per line")
        if st.st_size > MAX_QUESTIONS_BYTES:
            raise ConfigError(f"{path}: {st.st_size} bytes is more than the {MAX_QUESTIONS_BYTES} a questions "
                              "file may hold")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read questions ({os_reason(exc, path)})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    questions = [line.strip() for line in text.splitlines() if line.strip()]
    if not questions:
        raise ConfigError(f"{path}: holds no questions (one per line)")
    return questions


def qa_command(
    files_and_question: list[str] = typer.Argument(..., metavar="FILES... QUESTION",
                                                   help="3D files, then the question (quote it). With "
                                                   "--questions, every argument is a file."),
    llm: str = typer.Option("vicuna-7b", "--llm", help="vicuna-7b, flan-t5-xl, a Hugging Face id or a folder "
                            "written by save_pretrained."),
    lens: str = typer.Option("vitlens-eva-g14-qa", "--lens", help="Zoo name, official eva_g14_objaverse.pt, or a "
                             "lens folder saved by vitlens."),
    num_beams: int = typer.Option(5, "--num-beams", help=f"Beams of the beam search (1-{MAX_BEAMS})."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens",
                                                 help="Default: up to 256 tokens in all (InstructBLIP's max_length)."),
    temperature: float = typer.Option(1.0, "--temperature", help="1 (default) or 0: beam search, "
                                      "deterministic; any other value samples (top-p 0.9)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", "--dtype", help="The LLM's weights: " + PRECISION_HELP),
    load_in_8bit: bool = typer.Option(False, "--load-in-8bit", help="Load the LLM in 8 bits (CUDA + bitsandbytes)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and point resampling."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: results (file, question, answer) + settings."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="FILE with one question per line; every "
                                             "file is asked every question."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Answer questions about 3D shapes (zero-shot, InstructBLIP with the ViT-Lens 3D lens)."""
    out = output(quiet, verbose)
    with interruptible("qa"):
        import torch

        from ..precision import resolve_precision
        from ..qa.answer import answer_batch, load_qa, read_clouds

        if not 1 <= num_beams <= MAX_BEAMS:
            fail("--num-beams", f"{num_beams} is outside 1-{MAX_BEAMS}")
        if max_new_tokens is not None and not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            fail("--max-new-tokens", f"{max_new_tokens} is outside 1-{MAX_NEW_TOKENS}")
        if not (0.0 <= temperature <= 100.0):  # also refuses nan
            fail("--temperature", f"{temperature} is outside 0-100")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_device(torch, device)
        chosen = run_or_exit(lambda: resolve_precision(precision, device))
        if questions is not None:
            files, asked = list(files_and_question), run_or_exit(lambda: _read_questions(questions))
        else:
            if len(files_and_question) < 2:
                fail("FILES... QUESTION", "give one or more files and then the question (or --questions FILE)")
            files, asked = list(files_and_question[:-1]), [files_and_question[-1]]
        if not files:
            fail("FILES", "give at least one 3D file")
        # The shapes are read before the (large) model is loaded: a bad file is reported at once.
        clouds, failures = read_clouds(files, seed=seed)
        for path, reason in failures:
            print(f"skipped: {plain(path)}: {plain(reason)}", file=sys.stderr)
        if not clouds:
            raise typer.Exit(EXIT_FAILED_ITEMS)
        pairs = [(f, q) for f, _ in clouds for q in asked]
        if out.quiet:  # transformers and the Hub client draw their own loading / download bars
            from huggingface_hub.utils import disable_progress_bars
            from transformers.utils.logging import disable_progress_bar

            disable_progress_bars()
            disable_progress_bar()
        with out.timed("loading the LLM and the lens"):
            qa = run_or_exit(lambda: load_qa(llm, lens, device=device, dtype=chosen.dtype or torch.float32,
                                             load_in_8bit=load_in_8bit))
        out.detail(f"llm: {qa.llm}; lens: {qa.lens}; device: {qa.device}; "
                   f"dtype: {str(qa.dtype).removeprefix('torch.')} ({chosen.reason})")
        settings = {"llm": qa.llm, "lens": qa.lens, "num_beams": num_beams, "max_new_tokens": max_new_tokens,
                    "max_length": 256, "temperature": temperature, "top_p": 0.9, "repetition_penalty": 1.5,
                    "device": str(qa.device), "dtype": str(qa.dtype).removeprefix("torch."),
                    "precision": chosen.name, "precision_reason": chosen.reason,
                    "load_in_8bit": load_in_8bit, "seed": seed}
        with out.progress(disable=as_json) as progress, out.timed("answering"):
            task = progress.add_task("qa", total=len(pairs))
            answers = run_or_exit(lambda: answer_batch(
                qa, [c for _, c in clouds for _ in asked], [q for _, q in pairs], num_beams=num_beams,
                max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                on_batch=lambda done, _total: progress.update(task, completed=done)))
        if as_json:
            results = [{"file": f, "question": q, "answer": a} for (f, q), a in zip(pairs, answers)]
            print(json.dumps({"results": results, "settings": settings,
                              "failed": [{"path": p, "reason": r} for p, r in failures]}, indent=2))
        else:
            for (f, q), a in zip(pairs, answers):
                print(plain(a) if len(pairs) == 1 and not failures else f"{plain(f)}\t{plain(q)}\t{plain(a)}")
        if failures:
            raise typer.Exit(EXIT_FAILED_ITEMS)
