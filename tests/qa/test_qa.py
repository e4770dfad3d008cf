"""3D QA through transformers' InstructBLIP with tiny models built from configs (no downloads)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from transformers import (BlipImageProcessor, InstructBlipConfig,  # noqa: E402
                          InstructBlipForConditionalGeneration, InstructBlipProcessor, PreTrainedTokenizerFast)

from vitlens_cli.errors import CheckpointError, ConfigError  # noqa: E402
from vitlens_cli.models.checkpoints import save_model  # noqa: E402
from vitlens_cli.models.config import (LensConfig, ModelCard, ModelConfig, PerceiverConfig,  # noqa: E402
                                       Preprocess, VisionConfig)
from vitlens_cli.models.vitlens import ViTLens  # noqa: E402
from vitlens_cli.qa import PointLens, PointLensEmbeddings, load_lens  # noqa: E402
from vitlens_cli.qa.answer import (answer, answer_batch, build_inputs, generate_tokens,  # noqa: E402
                                   load_qa, prepare_input)

HIDDEN, NUM_PATCHES, NQ = 64, 16, 4
CORPUS = ["what is this object", "a chair with four legs", "a red car on the road", "describe the shape",
          "it is a table", "the airplane has wings", "how many legs does it have", "a lamp and a sofa"]


def nano_lens(latents: int = NUM_PATCHES, width: int = HIDDEN) -> LensConfig:
    return LensConfig(tokenizer="pointbert", npoints=256, in_channels=3, num_group=16, group_size=8,
                      encoder_dims=32, trans_dim=32,
                      perceiver=PerceiverConfig(input_chan=32, depth=1, num_latents=latents, latent_dim=width,
                                                latent_heads=2, latent_dim_head=16, cross_heads=1,
                                                cross_dim_head=16, self_per_cross_attn=1),
                      vit=VisionConfig(width=width, layers=1, heads=2, embed_dim=width))


def nano_model_config(lens: LensConfig) -> ModelConfig:
    return ModelConfig(lens=lens, preprocess=Preprocess(num_points=lens.npoints), card=ModelCard(name="nano-qa"),
                       init_seed=0)


def _word_tokenizer(specials: dict[str, str], extra: list[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for s in CORPUS for w in s.split()} | {"?", "question:", "answer:"})
    vocab = {tok: i for i, tok in enumerate(list(dict.fromkeys([*specials.values(), *extra])) + words)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk_token"]))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, **specials)


def _llm_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    from tokenizers import processors

    if kind == "llama":
        tok = _word_tokenizer({"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
                               "unk_token": "<unk>"}, [])
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.convert_tokens_to_ids("<s>"))])
    else:  # T5: pad 0 (decoder start), eos appended
        tok = _word_tokenizer({"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}, [])
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", tok.convert_tokens_to_ids("</s>"))])
    return tok


def _qformer_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import processors

    tok = _word_tokenizer({"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                           "sep_token": "[SEP]"}, ["[MASK]"])
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.cls_token_id), ("[SEP]", tok.sep_token_id)])
    return tok


def build_instructblip(folder, kind: str) -> None:
    """A tiny InstructBLIP (+ processor) saved with save_pretrained into ``folder``."""
    tok, qtok = _llm_tokenizer(kind), _qformer_tokenizer()
    processor = InstructBlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}),
                                      tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=NQ)
    tok = processor.tokenizer  # now holds <image>
    vocab = len(tok)
    if kind == "llama":
        text = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    else:
        text = transformers.T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                     decoder_start_token_id=tok.pad_token_id, feed_forward_proj="gated-gelu",
                                     tie_word_embeddings=False)
    config = InstructBlipConfig(
        vision_config=dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=16),
        qformer_config=dict(vocab_size=len(qtok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, encoder_hidden_size=HIDDEN,
                            cross_attention_frequency=1, pad_token_id=qtok.pad_token_id),
        text_config=text.to_dict(), num_query_tokens=NQ,
        image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config)
    with torch.no_grad():  # make the tiny LLM's logits depend visibly on its inputs
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("instructblip-llama")
    build_instructblip(d, "llama")
    return d


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("instructblip-t5")
    build_instructblip(d, "t5")
    return d


@pytest.fixture(scope="module")
def lens_dir(tmp_path_factory):
    cfg = nano_model_config(nano_lens())
    torch.manual_seed(1)
    return save_model(ViTLens(cfg), tmp_path_factory.mktemp("lens") / "nano-qa")


@pytest.fixture(scope="module")
def shape_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1000, 3)).astype(np.float32)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)  # a sphere
    path = tmp_path_factory.mktemp("shapes") / "sphere.npy"
    np.save(path, pts)
    return path


@pytest.fixture(scope="module")
def qa_llama(llama_dir, lens_dir):
    return load_qa(str(llama_dir), str(lens_dir), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def qa_t5(t5_dir, lens_dir):
    return load_qa(str(t5_dir), str(lens_dir), device="cpu", dtype="fp32")


GEN = dict(num_beams=2, max_new_tokens=6)


def test_load_swaps_embeddings_and_sets_eval(qa_llama):
    model = qa_llama.model
    assert isinstance(model.vision_model.embeddings, PointLensEmbeddings)
    assert not any(m.training for m in model.modules())
    assert model.config.image_token_index == qa_llama.image_token_id
    assert qa_llama.processor.num_query_tokens == NQ == qa_llama.num_query_tokens


def _oracle_llm_inputs(qa, points: torch.Tensor, question: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 3D path of InstructBLIP spelt out without the swapped module's ``forward`` or ``generate``:

    lens → ``[class; latents] + position`` → EVA encoder → post-layernorm → Q-Former (query tokens +
    instruction) → language projection → placeholders replaced in the LLM's input embeddings.
    Returns ``(prompt ids, inputs_embeds, attention mask)`` for one question.
    """
    model = qa.model
    emb = model.vision_model.embeddings
    inputs = build_inputs(qa, points, [question])
    latents = emb.lens(inputs["pixel_values"].float())
    cls = emb.class_embedding.expand(latents.shape[0], 1, -1)
    hidden = torch.cat([cls, latents], dim=1) + emb.position_embedding
    hidden = model.vision_model.encoder(inputs_embeds=hidden).last_hidden_state
    image_embeds = model.vision_model.post_layernorm(hidden)
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    query = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    query_mask = torch.ones(query.shape[:-1], dtype=torch.long)
    q_out = model.qformer(input_ids=inputs["qformer_input_ids"],
                          attention_mask=torch.cat([query_mask, inputs["qformer_attention_mask"]], dim=1),
                          query_embeds=query, encoder_hidden_states=image_embeds,
                          encoder_attention_mask=image_mask, return_dict=True).last_hidden_state
    features = model.language_projection(q_out[:, : query.shape[1], :])
    ids = inputs["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    slots = ids[0] == qa.image_token_id
    assert int(slots.sum()) == NQ
    embeds = embeds.clone()
    embeds[0, slots] = features[0]
    return ids, embeds, inputs["attention_mask"]


def _penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: a seen token's logit is divided by ``penalty`` (multiplied when negative)."""
    out = logits.clone()
    for t in set(seen.tolist()):
        out[t] = out[t] * penalty if out[t] < 0 else out[t] / penalty
    return out


def greedy_oracle(qa, points: torch.Tensor, question: str, max_new_tokens: int, penalty: float) -> list[int]:
    """Greedy decoding by hand: one full forward pass per token (no cache, no ``generate``), argmax of the
    penalised next-token logits, stop at EOS. Each choice must win by a clear margin, so that float noise
    between this uncached loop and a cached ``generate`` cannot flip it on another CPU."""
    lm = qa.model.language_model
    ids, embeds, mask = _oracle_llm_inputs(qa, points, question)
    eos = lm.config.eos_token_id
    table = qa.model.get_input_embeddings()
    new: list[int] = []
    decoder = [lm.config.decoder_start_token_id] if qa.is_encoder_decoder else []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            if qa.is_encoder_decoder:
                logits = lm(inputs_embeds=embeds, attention_mask=mask,
                            decoder_input_ids=torch.tensor([decoder + new])).logits[0, -1]
                seen = torch.tensor(decoder + new)
            else:
                step = torch.cat([embeds, table(torch.tensor([new], dtype=torch.long))], dim=1) if new else embeds
                logits = lm(inputs_embeds=step, attention_mask=torch.ones(step.shape[:2], dtype=torch.long)
                            ).logits[0, -1]
                seen = torch.cat([ids[0], torch.tensor(new, dtype=torch.long)])
            scores = _penalise(logits.double(), seen, penalty)
            top2 = torch.topk(scores, 2)
            assert float(top2.values[0] - top2.values[1]) > 1e-3, "ambiguous step: choose another input"
            new.append(int(top2.indices[0]))
            if new[-1] == eos:
                break
    return new


@pytest.mark.parametrize("penalty", [1.0, 1.5])
@pytest.mark.parametrize("which", ["qa_llama", "qa_t5"])
def test_stock_generate_matches_a_hand_written_greedy_decoder(request, which, penalty, shape_file):
    qa = request.getfixturevalue(which)
    pts = prepare_input(qa, shape_file)
    assert pts.shape == (256, 3)
    question = "what is this object ?"
    want = greedy_oracle(qa, pts, question, max_new_tokens=6, penalty=penalty)
    got = generate_tokens(qa, pts, [question], num_beams=1, max_new_tokens=6, repetition_penalty=penalty)
    got = got[0].tolist()
    if qa.is_encoder_decoder:  # T5 output starts with the decoder start token
        assert got[0] == qa.model.language_model.config.decoder_start_token_id
        got = got[1:]
    assert got[:len(want)] == want and len(want) > 0
    assert all(t == qa.processor.tokenizer.pad_token_id for t in got[len(want):])


def test_swap_output_shape(qa_llama, shape_file):
    pts = prepare_input(qa_llama, shape_file)[None]
    out = qa_llama.model.vision_model(pixel_values=pts).last_hidden_state
    assert out.shape == (1, NUM_PATCHES + 1, HIDDEN)


def test_deterministic_under_seed(qa_llama, shape_file):
    a = answer(qa_llama, shape_file, "describe the shape", num_beams=1, temperature=0.7, max_new_tokens=6, seed=3)
    b = answer(qa_llama, shape_file, "describe the shape", num_beams=1, temperature=0.7, max_new_tokens=6, seed=3)
    assert a == b
    assert answer(qa_llama, shape_file, "describe the shape", **GEN) == answer(qa_llama, shape_file,
                                                                               "describe the shape", **GEN)


def test_batch_left_padding_uses_attention_mask(qa_llama, shape_file):
    qs = ["what is this object ?", "how many legs does it have ?"]
    inputs = build_inputs(qa_llama, torch.stack([prepare_input(qa_llama, shape_file)] * 2), qs)
    assert (inputs["input_ids"] == qa_llama.image_token_id).sum(1).tolist() == [NQ, NQ]
    assert inputs["attention_mask"].sum(1).tolist()[0] < inputs["attention_mask"].shape[1]  # padded row masked
    answers = answer_batch(qa_llama, [shape_file, shape_file], qs, **GEN)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


@pytest.mark.parametrize("lens_cfg,match", [(nano_lens(width=32), "width"), (nano_lens(latents=8), "tokens")])
def test_wrong_lens_fails_with_one_line_config_error(qa_llama, lens_cfg, match):
    emb = qa_llama.model.vision_model.embeddings
    with pytest.raises(ConfigError, match=match) as info:
        PointLensEmbeddings(PointLens(lens_cfg), emb.class_embedding, emb.position_embedding)
    assert "\n" not in str(info.value)


def test_wrong_lens_through_load_qa(llama_dir, tmp_path):
    folder = save_model(ViTLens(nano_model_config(nano_lens(latents=8))), tmp_path / "bad")
    with pytest.raises(ConfigError, match="tokens"):
        load_qa(str(llama_dir), str(folder), device="cpu", dtype="fp32")


def _official_pt(path, lens: PointLens, extra: dict | None = None) -> None:
    state = {f"module.visual.{k}": v.clone() for k, v in lens.state_dict().items()}
    state["module.visual.patch_embed.proj.weight"] = torch.zeros(2, 2)  # EVA ViT key: not part of the lens
    state.update(extra or {})
    torch.save({"state_dict": state}, path)


def test_official_layout_pt_loads_strictly(tmp_path, lens_dir):
    lens, _ = load_lens(str(lens_dir))
    pt = tmp_path / "eva_lens.pt"
    _official_pt(pt, lens)
    loaded, cfg = load_lens(pt, config=nano_lens())
    assert cfg.perceiver.num_latents == NUM_PATCHES
    for k, v in lens.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    bad = tmp_path / "bad.pt"
    _official_pt(bad, lens, {"module.visual.perceiver.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_lens(bad, config=nano_lens())
    state = {k: v for k, v in torch.load(pt, weights_only=True)["state_dict"].items()
             if "perceiver.latents" not in k}
    missing = tmp_path / "missing.pt"
    torch.save({"state_dict": state}, missing)
    with pytest.raises(CheckpointError, match="missing"):
        load_lens(missing, config=nano_lens())


def test_load_qa_with_official_pt_matches_saved(llama_dir, lens_dir, tmp_path, qa_llama, shape_file):
    lens, _ = load_lens(str(lens_dir))
    pt = tmp_path / "eva_lens.pt"
    _official_pt(pt, lens)
    qa = load_qa(str(llama_dir), pt, device="cpu", dtype="fp32", lens_config=nano_model_config(nano_lens()))
    pts = prepare_input(qa, shape_file)
    assert torch.equal(generate_tokens(qa, pts, ["what is this object"], **GEN),
                       generate_tokens(qa_llama, pts, ["what is this object"], **GEN))


def test_zoo_name_offline_is_a_clean_error(llama_dir, shape_file, tmp_path):
    """Offline with an empty cache, the zoo lens cannot be fetched: one line, exit 2 (public env hooks only)."""
    from tests.robustness.harness import assert_clean_failure, run

    outcome = run(["qa", shape_file, "what is this object ?", "--llm", llama_dir, "--lens", "vitlens-eva-g14-qa",
                   "--dtype", "fp32"], env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
                                            "HF_HOME": str(tmp_path / "hf")}, timeout=300)
    assert_clean_failure(outcome, exit_code=2)
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.pt"))


# --- CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_app():
    import typer

    from vitlens_cli.cli.qa import qa_command

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("qa")(qa_command)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps `qa` a subcommand, as in the real app
        pass

    return app


def test_cli_plain_and_json(cli_app, llama_dir, lens_dir, shape_file):
    from typer.testing import CliRunner

    runner = CliRunner()
    args = ["qa", str(shape_file), "what is this object ?", "--llm", str(llama_dir), "--lens", str(lens_dir),
            "--num-beams", "2", "--max-new-tokens", "5", "--dtype", "fp32"]
    plain = runner.invoke(cli_app, args)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.strip()
    res = runner.invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["results"][0]["file"] == str(shape_file)
    assert data["results"][0]["question"] == "what is this object ?"
    assert data["results"][0]["answer"] == plain.stdout.strip()
    assert data["settings"]["num_beams"] == 2


def test_cli_quiet_and_verbose(cli_app, llama_dir, lens_dir, shape_file):
    from typer.testing import CliRunner

    runner = CliRunner()
    args = ["qa", str(shape_file), "what is this object ?", "--llm", str(llama_dir), "--lens", str(lens_dir),
            "--num-beams", "1", "--max-new-tokens", "3", "--dtype", "fp32"]
    quiet = runner.invoke(cli_app, [*args, "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.strip() and quiet.stderr == ""  # the answer is the result; nothing else
    verbose = runner.invoke(cli_app, [*args, "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stdout == quiet.stdout
    details = [ln for ln in verbose.stderr.splitlines() if ln.startswith("· ")]
    assert any(ln.startswith(f"· llm: {llama_dir}") and "device: cpu" in ln for ln in details), verbose.stderr
    assert any(ln.startswith("· answering: ") and ln.endswith(" s") for ln in details), verbose.stderr
    both = runner.invoke(cli_app, [*args, "--quiet", "--verbose"])
    assert both.exit_code == 2 and both.stderr.strip() == "error: --quiet: cannot be combined with --verbose"


def test_cli_questions_file_and_errors(cli_app, llama_dir, lens_dir, shape_file, tmp_path):
    from typer.testing import CliRunner

    qfile = tmp_path / "q.txt"
    qfile.write_text("what is this object ?\n\ndescribe the shape\n")
    runner = CliRunner()
    base = ["--llm", str(llama_dir), "--lens", str(lens_dir), "--num-beams", "1", "--max-new-tokens", "3"]
    res = runner.invoke(cli_app, ["qa", str(shape_file), str(shape_file), "--questions", str(qfile), "--json", *base])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["results"]) == 4
    bad = runner.invoke(cli_app, ["qa", str(shape_file), "what ?", "--llm", str(llama_dir),
                                  "--lens", str(tmp_path / "nope.pt")])
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


def test_real_cli_on_fixture_shapes(fixtures, llama_dir, lens_dir):
    """The installed `vitlens` app (not a test app) on real files: a coloured PLY and a ModelNet mesh."""
    from typer.testing import CliRunner

    from vitlens_cli.cli.app import app

    files = [fixtures / "clouds" / "owl_rgb.ply", fixtures / "meshes" / "chair_0002.off"]
    res = CliRunner().invoke(app, ["qa", *map(str, files), "what is this object ?", "--llm", str(llama_dir),
                                   "--lens", str(lens_dir), "--num-beams", "2", "--max-new-tokens", "4",
                                   "--seed", "3", "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert [r["file"] for r in results] == [str(f) for f in files]
    assert all(r["answer"].strip() for r in results)
