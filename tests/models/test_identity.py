"""Tower identity: the checkpoint file's content, an open_clip tag, or a seed names the weights."""
from __future__ import annotations

from vitlens_cli.models.identity import tower_identity


def test_tower_identity_follows_the_checkpoint_file_not_its_name(tmp_path):
    ckpt = tmp_path / "clip.bin"
    ckpt.write_bytes(b"weights-1")
    first = tower_identity("ViT-B-16", str(ckpt), "tiny", 0)
    ckpt.write_bytes(b"weights-2")
    assert tower_identity("ViT-B-16", str(ckpt), "tiny", 0) != first
    assert "sha256:" in first
    assert tower_identity("ViT-B-16", "laion2b_s34b_b88k", "tiny", 0) != tower_identity("ViT-B-16", "openai", "tiny", 0)
    assert tower_identity(None, None, "tiny", 0) != tower_identity(None, None, "tiny", 1)
