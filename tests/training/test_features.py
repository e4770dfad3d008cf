"""Feature cache: batched misses, independence from batch company, LRU bound by bytes, checkpoint identity."""
from __future__ import annotations

import pytest
import torch

from vitlens_cli.errors import ConfigError
from vitlens_cli.models import build_model, get_spec
from vitlens_cli.training.features import FeatureCache
from vitlens_cli.training.recipe import load_recipe

from ..conftest import REPO


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    return build_model(get_spec("tiny")).eval()


TEXTS = [f"a point cloud model of thing {i}." for i in range(11)]


class Counting:
    """An encoder that records every batch it is given."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, items):
        self.calls.append(list(items))
        with torch.inference_mode():
            return self.fn(items)


def test_misses_are_encoded_in_fixed_chunks_and_equal_per_sample(text_model):
    enc = Counting(text_model.encode_text)
    cache = FeatureCache(enc, chunk=4)
    got = cache(TEXTS[:6] + TEXTS[:2], TEXTS[:6] + TEXTS[:2])
    # 6 distinct misses: two calls of 4 (the second padded with its last item), not 6 calls of 1
    assert [len(c) for c in enc.calls] == [4, 4] and enc.calls[1] == TEXTS[4:6] + [TEXTS[5]] * 2
    assert cache.encoded == 6 and len(cache) == 6
    with torch.inference_mode():
        one = torch.nn.functional.normalize(torch.cat([text_model.encode_text([t]) for t in TEXTS[:6]]), dim=-1)
    torch.testing.assert_close(got[:6], one, atol=1e-6, rtol=1e-5)
    assert torch.equal(got[6:], got[:2])  # repeats in one call are served from the first encode
    cache(TEXTS[:3], TEXTS[:3])
    assert len(enc.calls) == 2  # all hits


def test_a_feature_does_not_depend_on_its_batch_company(text_model):
    """What makes a resumed run equal an uninterrupted one: same input, other neighbours, same bits."""
    a = FeatureCache(text_model.encode_text, chunk=4)(TEXTS[:4], TEXTS[:4])
    b = FeatureCache(text_model.encode_text, chunk=4)(TEXTS[7:10] + [TEXTS[2]], TEXTS[7:10] + [TEXTS[2]])
    c = FeatureCache(text_model.encode_text, chunk=4)([TEXTS[2]], [TEXTS[2]])
    assert torch.equal(a[2], b[3]) and torch.equal(a[2], c[0])


def _vectors(items):
    # 16 float32 = 64 bytes per feature; distinct, non-normalised rows
    return torch.stack([torch.arange(16.0) + float(i) for i in items])


def test_lru_eviction_by_bytes():
    enc = Counting(_vectors)
    cache = FeatureCache(enc, max_bytes=3 * 64, chunk=1)
    cache(["0", "1", "2"], [0, 1, 2])
    assert (len(cache), cache.nbytes, cache.evicted) == (3, 192, 0)
    cache(["0"], [0])            # a hit makes "0" the most recently used
    cache(["3"], [3])            # over the bound: "1", the least recently used, goes
    assert cache.nbytes == 192 and cache.evicted == 1
    calls = len(enc.calls)
    cache(["0", "2", "3"], [0, 2, 3])
    assert len(enc.calls) == calls  # still held
    cache(["1"], [1])
    assert enc.calls[-1] == [1]     # it had been evicted, so it is encoded again
    assert cache.encoded == 5 and len(cache) == 3
    expect = torch.nn.functional.normalize(_vectors([1]), dim=-1)
    assert torch.equal(cache(["1"], [1]), expect)


def test_a_bound_smaller_than_one_feature_holds_nothing():
    cache = FeatureCache(_vectors, max_bytes=10)
    cache(["0"], [0])
    assert len(cache) == 0 and cache.nbytes == 0


def test_entries_are_keyed_by_checkpoint_identity():
    enc = Counting(_vectors)
    cache = FeatureCache(enc, identity="ckpt-a", chunk=1)
    cache(["x"], [1])
    cache.identity = "ckpt-b"   # the same cache asked for another tower's feature of "x"
    cache(["x"], [2])
    assert len(enc.calls) == 2 and len(cache) == 2
    cache.identity = "ckpt-a"
    assert torch.equal(cache(["x"], [9]), torch.nn.functional.normalize(_vectors([1]), dim=-1))


def test_recipe_bound_field():
    recipe = REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml"
    assert load_recipe(recipe, ["feature_cache_mb=null"]).feature_cache_mb is None
    with pytest.raises(ConfigError, match="feature_cache_mb: must be 0 or more .*, got -1"):
        load_recipe(recipe, ["feature_cache_mb=-1"])


def test_a_pixel_view_never_goes_through_the_path_cache():
    """Paths are cached; a view (a per-item augmented image) is encoded every time, in fixed chunks, and a
    feature cached under an image's path is never served for a view of it."""
    from vitlens_cli.training.features import ImageFeatures

    by_path = Counting(lambda paths: torch.tensor([[float(len(p)), 1.0, 0.0] for p in paths]))
    by_pixels = Counting(lambda views: torch.stack(views).flatten(1)[:, :3])
    cache = FeatureCache(by_path, chunk=4)
    images = ImageFeatures(cache, by_pixels)
    path_feats = images(["a.jpg", "bb.jpg"], [None, None])
    assert cache.encoded == 2 and cache.hits == 0 and images.views_encoded == 0

    view = torch.tensor([3.0, 4.0, 0.0]).view(3, 1, 1)
    other = torch.tensor([0.0, 0.0, 2.0]).view(3, 1, 1)
    got = images(["a.jpg", "a.jpg", None], [None, view, other])
    assert cache.hits == 1 and cache.encoded == 2 and len(cache) == 2  # only the path row met the cache
    assert images.views_encoded == 2 and images.encoded == 4
    assert [len(c) for c in by_pixels.calls] == [4]  # the two views in one fixed chunk (padded)
    assert torch.equal(got[0], path_feats[0])
    torch.testing.assert_close(got[1], torch.tensor([0.6, 0.8, 0.0]))  # the view's own feature, not a.jpg's
    torch.testing.assert_close(got[2], torch.tensor([0.0, 0.0, 1.0]))
    images([None], [view])
    assert images.views_encoded == 3 and len(by_pixels.calls) == 2  # the same view again: encoded again
    assert images(["a.jpg", None], [None, None]) is None  # a row with neither: no image features for the batch


def test_image_view_reads_the_open_clip_eval_transform():
    from torchvision import transforms as T

    from vitlens_cli.training.features import image_view

    transform = T.Compose([T.Resize(96), T.CenterCrop(96), T.ToTensor(), T.Normalize((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))])
    view = image_view(transform)
    assert (view.size, view.mean, view.std, view.transform) == (96, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), transform)
    with pytest.raises(ConfigError, match="CenterCrop and Normalize"):
        image_view(T.Compose([T.ToTensor()]))
