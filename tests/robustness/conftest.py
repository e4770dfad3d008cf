"""Robustness cases run without any network proxy and with a fresh data/cache root per test."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLENS_DATA", str(tmp_path / "vitlens-data"))
    monkeypatch.setenv("VITLENS_CACHE", str(tmp_path / "vitlens-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
