"""The cache root: $VITLENS_CACHE when set, else ~/.cache/vitlens; one folder per kind."""
from __future__ import annotations

from pathlib import Path

from vitlens_cli.user_cache import cache_dir


def test_env_var_wins_and_home_is_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("VITLENS_CACHE", str(tmp_path / "c"))
    assert cache_dir("verified") == tmp_path / "c" / "verified"
    monkeypatch.delenv("VITLENS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("classifiers") == Path(tmp_path / "home" / ".cache" / "vitlens" / "classifiers")
