"""Zero-shot 3D question answering: a ViT-Lens point lens inside transformers' InstructBLIP.

``load_qa`` loads ``InstructBlipForConditionalGeneration`` + ``InstructBlipProcessor``, swaps
``vision_model.embeddings`` for :class:`~vitlens_cli.qa.lens.PointLensEmbeddings` and checks the
wiring (``image_token_index``, ``num_query_tokens`` placeholders). ``answer`` / ``answer_batch``
use the model's stock ``generate``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..models.config import LensConfig, ModelConfig, Preprocess
from ..models.preprocess import prepare_points
from ..points import PointCloud
from ..precision import resolve_precision
from .lens import PointLensEmbeddings, load_lens_full

LLMS = {"vicuna-7b": "Salesforce/instructblip-vicuna-7b", "flan-t5-xl": "Salesforce/instructblip-flan-t5-xl"}
IMAGE_TOKEN = "<image>"

PointsInput = str | Path | np.ndarray | torch.Tensor | PointCloud


@dataclass
class QAModel:
    model: Any  # InstructBlipForConditionalGeneration
    processor: Any  # InstructBlipProcessor
    preprocess: Preprocess
    lens_config: LensConfig
    llm: str
    lens: str
    device: torch.device
    dtype: torch.dtype
    image_token_id: int = -1
    num_query_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.language_model.config.is_encoder_decoder)


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """The LLM's dtype: a torch dtype as given, or a precision name resolved by :mod:`vitlens_cli.precision`."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return resolve_precision(dtype, device).dtype or torch.float32


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_wiring(model: Any, processor: Any) -> tuple[int, int]:
    """Set/verify ``image_token_index`` and the processor's number of ``<image>`` placeholders."""
    tokenizer = processor.tokenizer
    token = getattr(processor, "image_token", None)
    token = getattr(token, "content", token) or IMAGE_TOKEN
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"the LLM tokenizer has no '{token}' token; cannot place the 3D features")
    vocab = model.get_input_embeddings().weight.shape[0]
    if token_id >= vocab:
        raise ConfigError(f"'{token}' has id {token_id} but the LLM embedding has only {vocab} rows; "
                          "resize the token embeddings of this checkpoint")
    cfg = model.config
    if cfg.image_token_index is None:
        cfg.image_token_index = token_id
    elif cfg.image_token_index != token_id:
        raise ConfigError(f"config image_token_index {cfg.image_token_index} differs from the tokenizer's "
                          f"'{token}' id {token_id}")
    nq = int(cfg.num_query_tokens)
    if model.query_tokens.shape[1] != nq:
        raise ConfigError(f"num_query_tokens {nq} differs from the model's {model.query_tokens.shape[1]} "
                          "query tokens")
    if getattr(processor, "num_query_tokens", None) is None:
        processor.num_query_tokens = nq
    elif processor.num_query_tokens != nq:
        raise ConfigError(f"the processor inserts {processor.num_query_tokens} '{token}' tokens but the model "
                          f"has {nq} query tokens")
    return token_id, nq


def load_qa(llm: str, lens: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype = "auto",
            load_in_8bit: bool = False, lens_config: ModelConfig | LensConfig | str | Path | None = None
            ) -> QAModel:
    """InstructBLIP (``vicuna-7b``, ``flan-t5-xl``, a hub id or a ``save_pretrained`` folder) with a 3D lens.

    ``lens`` is the zoo name ``vitlens-eva-g14-qa``, an official ``eva_g14_objaverse.pt`` or a lens
    folder saved by vitlens. Hub ids honour ``HF_HUB_OFFLINE``; folders are read with
    ``local_files_only``.
    """
    try:
        from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor
    except ImportError as exc:
        raise ConfigError("3D question answering needs transformers: pip install 'vitlens[qa]'") from exc

    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    source = LLMS.get(llm, llm)
    local = Path(source).is_dir()
    if not local and (Path(source).exists() or source.startswith((".", "/", "~"))):
        raise ConfigError(f"{source}: not a folder written by save_pretrained, a hub id or one of "
                          f"{', '.join(LLMS)}")
    kwargs: dict[str, Any] = {"local_files_only": local or os.environ.get("HF_HUB_OFFLINE") == "1"}
    model_kwargs: dict[str, Any] = dict(kwargs, dtype=torch_dtype)
    if load_in_8bit:
        if device.type != "cuda":
            raise ConfigError("--load-in-8bit needs a CUDA device")
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=["vision_model", "qformer", "language_projection", "lm_head"])
        model_kwargs["device_map"] = {"": device.index or 0}
    point_lens, cfg = load_lens_full(lens, lens_config)
    try:
        model = InstructBlipForConditionalGeneration.from_pretrained(source, **model_kwargs)
        processor = InstructBlipProcessor.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise CheckpointError(f"{source}: cannot load InstructBLIP ({_first_line(exc)})") from exc
    if not load_in_8bit:
        model = model.to(device)
    vision = model.vision_model
    emb_device = vision.embeddings.position_embedding.device
    PointLensEmbeddings.replace(vision, point_lens.to(device=emb_device, dtype=torch.float32))
    model.eval()
    token_id, nq = _check_wiring(model, processor)
    return QAModel(model=model, processor=processor, preprocess=cfg.preprocess, lens_config=cfg.lens, llm=source,
                   lens=str(lens), device=device, dtype=torch_dtype, image_token_id=token_id,
                   num_query_tokens=nq)


def prepare_input(qa: QAModel, points_or_path: PointsInput, seed: int = 0) -> torch.Tensor:
    """``(N, C)`` float32 points following the lens's preprocessing contract.

    Paths are read with :func:`vitlens_cli.points.read_points`; arrays ``(N, 3)`` / ``(N, 6)`` and
    PointClouds are resampled and normalised; tensors are taken as already prepared.
    """
    from ..points import read_points

    if isinstance(points_or_path, torch.Tensor):
        return points_or_path.float()
    if isinstance(points_or_path, (str, Path)):
        cloud = read_points(points_or_path, seed=seed)
    elif isinstance(points_or_path, np.ndarray):
        arr = np.asarray(points_or_path, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] not in (3, 6):
            raise ConfigError(f"expected points of shape (N, 3) or (N, 6), got {arr.shape}")
        cloud = PointCloud(arr[:, :3], arr[:, 3:6] if arr.shape[1] == 6 else None)
    elif isinstance(points_or_path, PointCloud):
        cloud = points_or_path
    else:
        raise ConfigError(f"cannot read points from {type(points_or_path).__name__}")
    return torch.from_numpy(prepare_points(cloud, qa.preprocess, seed=seed))


def read_clouds(paths: Sequence[str | Path], seed: int = 0
                ) -> tuple[list[tuple[str, PointCloud]], list[tuple[str, str]]]:
    """``(path, cloud)`` for every readable file and ``(path, reason)`` for every other one, in order."""
    from ..errors import PointFileError
    from ..points import read_points

    clouds, failures = [], []
    for path in paths:
        try:
            clouds.append((str(path), read_points(path, seed=seed)))
        except PointFileError as exc:
            failures.append((str(path), exc.reason))
    return clouds, failures


def build_inputs(qa: QAModel, points: torch.Tensor, questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Model inputs: points, Q-Former instruction, and the LLM prompt with ``num_query_tokens`` placeholders.

    The placeholders go first (before BOS), as InstructBLIP's processor puts them; prompts are
    left-padded for decoder-only LLMs and every mask is returned.
    """
    if points.dim() == 2:
        points = points.unsqueeze(0)
    if points.shape[0] != len(questions):
        raise ConfigError(f"{points.shape[0]} point clouds but {len(questions)} questions")
    proc = qa.processor
    tok = proc.tokenizer
    if not qa.is_encoder_decoder:
        tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    text = tok(list(questions), padding=True, return_tensors="pt")
    qtext = proc.qformer_tokenizer(list(questions), padding=True, truncation=True, max_length=512,
                                   return_tensors="pt")
    b, nq = len(questions), qa.num_query_tokens
    image_ids = torch.full((b, nq), qa.image_token_id, dtype=torch.long)
    input_ids = torch.cat([image_ids, text["input_ids"]], dim=1)
    attention = torch.cat([torch.ones(b, nq, dtype=torch.long), text["attention_mask"]], dim=1)
    placed = int((input_ids == qa.image_token_id).sum(dim=1).min())
    if placed != nq or int((input_ids == qa.image_token_id).sum(dim=1).max()) != nq:
        raise ConfigError(f"prompt holds {placed} '{IMAGE_TOKEN}' placeholders but the Q-Former emits {nq} "
                          "tokens (does the question contain '<image>'?)")
    dev = qa.device if qa.device.type != "meta" else torch.device("cpu")
    return {"pixel_values": points.to(dev), "input_ids": input_ids.to(dev), "attention_mask": attention.to(dev),
            "qformer_input_ids": qtext["input_ids"].to(dev), "qformer_attention_mask": qtext["attention_mask"].to(dev)}


def generation_kwargs(num_beams: int = 5, top_p: float = 0.9, repetition_penalty: float = 1.5,
                      max_length: int = 256, max_new_tokens: int | None = None, temperature: float = 1.0,
                      do_sample: bool | None = None, min_length: int = 1) -> dict[str, Any]:
    """InstructBLIP's defaults (beam search, as LAVIS/ViT-Lens run it). Sampling is on when
    ``do_sample`` is true, or when it is ``None`` and ``temperature`` is neither 1 nor 0."""
    if do_sample is None:
        do_sample = temperature not in (0.0, 1.0)
    kw: dict[str, Any] = {"num_beams": num_beams, "repetition_penalty": repetition_penalty,
                          "length_penalty": 1.0, "do_sample": do_sample, "min_length": min_length}
    if do_sample:
        kw.update(top_p=top_p, temperature=temperature)
    if max_new_tokens is not None:
        kw["max_new_tokens"] = max_new_tokens
    else:
        kw["max_length"] = max_length
    return kw


@contextlib.contextmanager
def _rng(qa: QAModel, seed: int) -> Iterator[None]:
    """Seed torch for generation without disturbing the caller's RNG state."""
    devices = [qa.device] if qa.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _new_tokens(out: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Decoder-only ``generate`` on ``input_ids`` + ``inputs_embeds`` echoes the prompt: drop it."""
    n = input_ids.shape[1]
    if out.shape[1] >= n and torch.equal(out[:, :n].to(input_ids.device), input_ids):
        return out[:, n:]
    return out


def generate_tokens(qa: QAModel, points: torch.Tensor, questions: Sequence[str], *, seed: int = 0,
                    **gen: Any) -> torch.Tensor:
    """Stock ``InstructBlipForConditionalGeneration.generate`` with points as ``pixel_values``; new tokens only."""
    inputs = build_inputs(qa, points, questions)
    with torch.inference_mode(), _rng(qa, seed):
        out = qa.model.generate(**inputs, **generation_kwargs(**gen))
    return _new_tokens(out, inputs["input_ids"])


def decode(qa: QAModel, tokens: torch.Tensor) -> list[str]:
    return [t.strip() for t in qa.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)]


def answer_batch(qa: QAModel, items: Sequence[PointsInput], questions: Sequence[str] | str, *,
                 num_beams: int = 5, top_p: float = 0.9, repetition_penalty: float = 1.5, max_length: int = 256,
                 max_new_tokens: int | None = None, temperature: float = 1.0, do_sample: bool | None = None,
                 seed: int = 0, batch_size: int = 4,
                 on_batch: Callable[[int, int], None] | None = None) -> list[str]:
    """One answer per (item, question) pair; a single question string is asked of every item.

    ``on_batch(answered, total)`` is called after each batch of ``batch_size`` pairs."""
    if isinstance(questions, str):
        questions = [questions] * len(items)
    if len(questions) != len(items):
        raise ConfigError(f"{len(items)} point clouds but {len(questions)} questions")
    gen = dict(num_beams=num_beams, top_p=top_p, repetition_penalty=repetition_penalty, max_length=max_length,
               max_new_tokens=max_new_tokens, temperature=temperature, do_sample=do_sample)
    answers: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        pts = torch.stack([prepare_input(qa, item, seed=seed) for item in chunk])
        tokens = generate_tokens(qa, pts, list(questions[start:start + batch_size]), seed=seed, **gen)
        answers.extend(decode(qa, tokens))
        if on_batch is not None:
            on_batch(len(answers), len(items))
    return answers


def answer(qa: QAModel, points_or_path: PointsInput, question: str, *, num_beams: int = 5, top_p: float = 0.9,
           repetition_penalty: float = 1.5, max_length: int = 256, max_new_tokens: int | None = None,
           temperature: float = 1.0, do_sample: bool | None = None, seed: int = 0) -> str:
    """Answer one question about one point cloud (a path, an array, a PointCloud or prepared points)."""
    return answer_batch(qa, [points_or_path], [question], num_beams=num_beams, top_p=top_p,
                        repetition_penalty=repetition_penalty, max_length=max_length,
                        max_new_tokens=max_new_tokens, temperature=temperature, do_sample=do_sample,
                        seed=seed, batch_size=1)[0]


__all__ = ["LLMS", "QAModel", "answer", "answer_batch", "build_inputs", "decode", "generate_tokens",
           "generation_kwargs", "load_qa", "prepare_input", "read_clouds", "resolve_dtype"]
