"""The one-stop caption cleaning rule."""
from __future__ import annotations

import pytest

from vitlens_cli.caption_text import pre_caption


@pytest.mark.parametrize("raw, clean", [("A bird.", "a bird"), ("Crackling fire: (loud)!", "crackling fire loud"),
                                        ("x  \t y", "x y"), (" ".join(["w"] * 75), " ".join(["w"] * 70))])
def test_pre_caption_rule(raw: str, clean: str):
    assert pre_caption(raw) == clean
