"""``vitlens qa``: ask InstructBLIP questions about 3D files through the ViT-Lens 3D lens."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from .errors import run_or_exit


def _read_questions(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read questions ({exc.strerror or exc})") from None
    questions = [line.strip() for line in lines if line.strip()]
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
    num_beams: int = typer.Option(5, "--num-beams", min=1),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1,
                                                 help="Default: up to 256 tokens in all (InstructBLIP's max_length)."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="1 (default) or 0: beam search, "
                                      "deterministic; any other value samples (top-p 0.9)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="bf16, fp16, fp32, or auto (bf16 on CUDA, fp32 on CPU)."),
    load_in_8bit: bool = typer.Option(False, "--load-in-8bit", help="Load the LLM in 8 bits (CUDA + bitsandbytes)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and point resampling."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: results (file, question, answer) + settings."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="FILE with one question per line; every "
                                             "file is asked every question."),
) -> None:
    """Answer questions about 3D shapes (zero-shot, InstructBLIP with the ViT-Lens 3D lens)."""
    import torch

    from ..qa.answer import DTYPES, answer_batch, load_qa

    if dtype not in (*DTYPES, "auto"):
        raise typer.BadParameter("must be bf16, fp16, fp32 or auto", param_hint="--dtype")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    if questions is not None:
        files, asked = list(files_and_question), run_or_exit(lambda: _read_questions(questions))
    else:
        if len(files_and_question) < 2:
            raise typer.BadParameter("give one or more files and then the question (or --questions FILE)",
                                     param_hint="FILES... QUESTION")
        files, asked = list(files_and_question[:-1]), [files_and_question[-1]]
    pairs = [(f, q) for f in files for q in asked]
    qa = run_or_exit(lambda: load_qa(llm, lens, device=device, dtype=dtype, load_in_8bit=load_in_8bit))
    settings = {"llm": qa.llm, "lens": qa.lens, "num_beams": num_beams, "max_new_tokens": max_new_tokens,
                "max_length": 256, "temperature": temperature, "top_p": 0.9, "repetition_penalty": 1.5,
                "device": str(qa.device), "dtype": str(qa.dtype).removeprefix("torch."),
                "load_in_8bit": load_in_8bit, "seed": seed}
    answers = run_or_exit(lambda: answer_batch(
        qa, [f for f, _ in pairs], [q for _, q in pairs], num_beams=num_beams, max_new_tokens=max_new_tokens,
        temperature=temperature, seed=seed))
    if as_json:
        results = [{"file": f, "question": q, "answer": a} for (f, q), a in zip(pairs, answers)]
        print(json.dumps({"results": results, "settings": settings}, indent=2))
        return
    for (f, q), a in zip(pairs, answers):
        if len(pairs) == 1:
            print(a)
        else:
            print(f"{f}\t{q}\t{a}")
