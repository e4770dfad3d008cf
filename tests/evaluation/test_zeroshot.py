"""Zero-shot classifier rule (normalise → mean → normalise) and cosine logits, with a stub text encoder."""
from __future__ import annotations

import pytest
import torch

from vitlens_cli.errors import ConfigError
from vitlens_cli.evaluation.zeroshot import (cached_caption_embeddings, cached_classifier, check_templates,
                                             class_prompts, zeroshot_classifier, zeroshot_logits)


class StubText:
    """Deterministic prompt → embedding table with very different norms per prompt."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def encode_text(self, prompts):
        self.calls.append(list(prompts))
        return torch.stack([self.table[p] for p in prompts])


def test_class_prompts():
    assert class_prompts(["cat", "flower pot"], ["a {}.", "the {} here"]) == [
        ["a cat.", "the cat here"], ["a flower pot.", "the flower pot here"]]


def test_rule_normalises_each_prompt_before_averaging():
    table = {"a x": torch.tensor([100.0, 0.0]), "b x": torch.tensor([0.0, 1.0]),
             "a y": torch.tensor([1.0, 1.0]), "b y": torch.tensor([-3.0, 3.0])}
    model = StubText(table)
    clf = zeroshot_classifier(model, ["x", "y"], ["a {}", "b {}"])
    assert model.calls == [["a x", "b x"], ["a y", "b y"]]
    s = 2**-0.5
    # x: mean of (1,0) and (0,1) → (s, s); averaging raw embeddings would give ≈ (1, 0.01)
    torch.testing.assert_close(clf[0], torch.tensor([s, s]))
    torch.testing.assert_close(clf[1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(clf.norm(dim=-1), torch.ones(2))


def test_logits_are_cosine_without_scale():
    # Hand-made: a 3-4-5 triangle and unit axes, so every cosine is a known fraction.
    clf = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = torch.tensor([[30.0, 40.0], [0.0, -2.0]])  # norms 50 and 2: logits must not scale with them
    logits = zeroshot_logits(emb, clf)
    torch.testing.assert_close(logits, torch.tensor([[0.6, 0.8, -0.6], [0.0, -1.0, 0.0]]))


def test_classifier_and_logits_rank_a_known_case():
    """Two classes, two templates each, and a shape whose raw-embedding average would pick the wrong class."""
    table = {"a cat": torch.tensor([10.0, 0.0, 0.0]), "the cat": torch.tensor([0.0, 0.1, 0.0]),
             "a dog": torch.tensor([0.0, 0.0, 1.0]), "the dog": torch.tensor([0.0, 1.0, 0.0])}
    clf = zeroshot_classifier(StubText(table), ["cat", "dog"], ["a {}", "the {}"])
    s = 2**-0.5
    torch.testing.assert_close(clf, torch.tensor([[s, s, 0.0], [0.0, s, s]]))
    shape = torch.tensor([[0.0, 3.0, 1.0]])  # closer to dog (0, s, s) than to cat (s, s, 0)
    logits = zeroshot_logits(shape, clf)
    torch.testing.assert_close(logits, torch.tensor([[3 * s, 4 * s]]) / 10**0.5)
    assert int(logits.argmax()) == 1


@pytest.mark.parametrize("template, fragment", [
    ("a photo", "exactly once, found 0"),
    ("{} and {}", "exactly once, found 2"),
    ("a {name}", "only placeholder allowed is {}, found {name}"),
    ("a {0}", "found {0}"),
    ("a {!r}", "found {!r}"),
    ("a {:>9}", "found {:>9}"),
    ("a { b {}", "literal braces"),
    ("a } b {}", "literal braces"),
])
def test_check_templates_refuses_what_format_would_break(template: str, fragment: str):
    with pytest.raises(ConfigError) as info:
        check_templates(["a {} here", template])
    assert repr(template) in str(info.value) and fragment in str(info.value)


def test_check_templates_accepts_escaped_braces():
    templates = ["a {}.", "{{3D}} model of {}"]
    assert check_templates(templates) == templates
    assert class_prompts(["cat"], templates) == [["a cat.", "{3D} model of cat"]]
    with pytest.raises(ConfigError, match="no prompt templates"):
        check_templates([])


class StubModel(StubText):
    """A stub with a text tower whose weights key the classifier cache."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        super().__init__(table)
        self.text = torch.nn.Linear(2, 2)


TABLE = {"a x": torch.tensor([3.0, 4.0]), "a y": torch.tensor([0.0, 2.0])}


def test_cached_classifier_is_reused_then_rebuilt_when_damaged(tmp_path):
    model = StubModel(TABLE)
    clf, encoded = cached_classifier(model, ["x", "y"], ["a {}"], tmp_path)
    torch.testing.assert_close(clf, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert encoded == 2 and len(model.calls) == 2
    again, encoded = cached_classifier(model, ["x", "y"], ["a {}"], tmp_path)
    assert encoded == 0 and len(model.calls) == 2  # read back, nothing encoded
    torch.testing.assert_close(again, clf)
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:20])  # a truncated cache entry
    rebuilt, encoded = cached_classifier(model, ["x", "y"], ["a {}"], tmp_path)
    assert encoded == 2 and len(model.calls) == 4
    torch.testing.assert_close(rebuilt, clf)
    assert cached_classifier(model, ["x", "y"], ["a {}"], tmp_path)[1] == 0  # and the entry was replaced


def test_unwritable_classifier_cache_is_skipped(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    clf, encoded = cached_classifier(StubModel(TABLE), ["x", "y"], ["a {}"], blocker / "cache")
    assert encoded == 2
    torch.testing.assert_close(clf, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))


class StubCaptionModel:
    """``encode_text(texts, normalize)`` from a table, recording every batch it is given."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        self.table = table
        self.calls: list[list[str]] = []
        self.text = torch.nn.Linear(2, 2)

    def encode_text(self, texts, normalize=False):
        self.calls.append(list(texts))
        emb = torch.stack([self.table[t] for t in texts])
        return emb / emb.norm(dim=-1, keepdim=True) if normalize else emb


def test_caption_embeddings_are_batched_normalised_and_cached(tmp_path):
    table = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0, 2.0]), "c": torch.tensor([-1.0, 0.0])}
    model = StubCaptionModel(table)
    emb, encoded = cached_caption_embeddings(model, ["a", "b", "c"], tmp_path, batch_size=2)
    assert encoded == 3 and model.calls == [["a", "b"], ["c"]]
    torch.testing.assert_close(emb, torch.tensor([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]))
    again, encoded = cached_caption_embeddings(model, ["a", "b", "c"], tmp_path)
    assert encoded == 0 and len(model.calls) == 2
    torch.testing.assert_close(again, emb)
    _, encoded = cached_caption_embeddings(model, ["c", "b", "a"], tmp_path)  # another order is another key
    assert encoded == 3
    with torch.no_grad():
        model.text.weight.add_(1.0)  # other text-tower weights: the cached rows no longer apply
    assert cached_caption_embeddings(model, ["a", "b", "c"], tmp_path)[1] == 3


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """Two saves of the tiny model whose text towers differ in one weight."""
    from vitlens_cli.models import load_model
    from vitlens_cli.models.checkpoints import save_model

    root = tmp_path_factory.mktemp("saves")
    model = load_model("tiny")
    save_model(model, root / "a")
    with torch.no_grad():
        next(model.text.parameters()).view(-1)[0] += 1.0
    save_model(model, root / "b")
    return root / "a", root / "b"


def test_classifier_is_keyed_by_the_checkpoint_file_without_hashing_the_text_tower(saved_tiny, tmp_path,
                                                                                   monkeypatch):
    from vitlens_cli.evaluation.zeroshot import classifier_key
    from vitlens_cli.models import load_model

    first, other = load_model(saved_tiny[0]), load_model(saved_tiny[1])

    def untouchable(*args, **kwargs):
        raise AssertionError("the text tower's weights were read to key the cache")

    for model in (first, other):
        monkeypatch.setattr(model.text, "state_dict", untouchable)
    clf, encoded = cached_classifier(first, ["x", "y"], ["a {}", "the {}"], tmp_path)
    assert encoded == 4
    again, encoded = cached_classifier(load_model(saved_tiny[0]), ["x", "y"], ["a {}", "the {}"], tmp_path)
    assert encoded == 0  # another load of the same file: read back
    torch.testing.assert_close(again, clf)
    assert classifier_key(other, ["x", "y"], ["a {}", "the {}"]) != classifier_key(first, ["x", "y"], ["a {}", "the {}"])
    assert cached_classifier(other, ["x", "y"], ["a {}", "the {}"], tmp_path)[1] == 4


def test_a_known_hub_sha256_keys_without_reading_the_file(saved_tiny, monkeypatch):
    from vitlens_cli.evaluation import zeroshot
    from vitlens_cli.models import factory, load_model

    model = load_model(saved_tiny[0])
    read_key = zeroshot.classifier_key(model, ["x"], ["a {}"])
    monkeypatch.setattr(factory, "hub_sha256", lambda path: "0" * 64)
    monkeypatch.setattr("vitlens_cli.atomic.file_digest", lambda path: pytest.fail("the file was read"))
    assert zeroshot.classifier_key(model, ["x"], ["a {}"]) != read_key  # named by the recorded sha256


def test_fresh_weights_are_keyed_by_their_values(saved_tiny):
    from vitlens_cli.evaluation.zeroshot import classifier_key
    from vitlens_cli.models import load_model

    fresh = load_model("tiny")  # built, not read from a file
    assert fresh.weights_file is None
    before = classifier_key(fresh, ["x"], ["a {}"])
    with torch.no_grad():
        next(fresh.text.parameters()).view(-1)[0] += 1.0
    assert classifier_key(fresh, ["x"], ["a {}"]) != before
