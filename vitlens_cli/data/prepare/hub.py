"""Dataset files that live in a Hugging Face dataset repo, fetched through ``huggingface_hub``.

The Hub's client brings what a release needs: its cache (``HF_HUB_CACHE``; a file already there is not fetched
again), the user's token (``HF_TOKEN`` or ``hf auth login``, for gated repos), offline mode (``HF_HUB_OFFLINE=1``
reads the cache only) and resuming of cut transfers. Every file is fetched at one commit of the repo, so a
release is never a mix of two revisions, and a file the Hub stores by sha256 (LFS) is hashed against it.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ...errors import VitlensError
from .download import sha256_file

__all__ = ["HubError", "HubSource", "fetch"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_WORKERS = 8  # listed files are small and many: fetch several at once, as snapshot_download does

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class HubSource:
    """Files of a dataset repo that together are one release.

    ``files`` are fetched first. ``listing`` (one of them, ``{variant}`` filled in) names further files, one a
    line, relative to ``listed_under``. The reader is given the folder ``root`` of the fetched snapshot, or the
    file itself where the release is one archive (``root`` empty and one file).
    """

    repo: str
    files: tuple[str, ...]
    root: str = ""
    listing: str | None = None
    listed_under: str = ""
    confirmed: str = ""  # where this repo layout was seen, so the next maintainer can check it again


class HubError(VitlensError):
    """A release's file could not be had from the Hub (or its cache); one line that says what to do."""


def fetch(source: HubSource, variant: str | None, *, where: str, progress: Progress | None = None,
          cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """The local folder (or archive) holding ``source``, from the Hub's cache or downloaded into it."""
    first, *rest = source.files
    path = _get(source.repo, first, None, where, progress, cache_dir, endpoint)
    snapshot = path.parents[len(Path(first).parts) - 1]
    commit = snapshot.name  # the cache's snapshots/<commit>/: the revision every other file is taken at
    for name in rest:
        _get(source.repo, name, commit, where, progress, cache_dir, endpoint)
    if source.listing is not None:
        listing = snapshot / source.listing.format(variant=variant)
        names = [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
        wanted = [f"{source.listed_under}/{n}" if source.listed_under else n for n in names]
        done = 0
        if progress is not None:
            progress("download files", 0, len(wanted))
        with ThreadPoolExecutor(_WORKERS) as pool:
            for _ in pool.map(lambda n: _get(source.repo, n, commit, where, None, cache_dir, endpoint), wanted):
                done += 1
                if progress is not None:
                    progress("download files", done, len(wanted))
    if not source.root and len(source.files) == 1:
        return path
    return snapshot / source.root


def _get(repo: str, filename: str, revision: str | None, where: str, progress: Progress | None,
         cache_dir: str | Path | None, endpoint: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    what = f"{repo}/{filename}"
    kwargs = dict(repo_type="dataset", revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                  tqdm_class=None if progress is None else _reporter(f"download {Path(filename).name}", progress))
    try:
        path = Path(hf_hub_download(repo, filename, **kwargs))
    except Exception as exc:
        raise _one_line(what, where, exc) from None
    if _verified(path):
        return path
    try:  # a damaged copy in the cache: fetched once more
        path = Path(hf_hub_download(repo, filename, force_download=True, **kwargs))
    except Exception as exc:
        raise _one_line(what, where, exc) from None
    if not _verified(path):
        raise HubError(f"{what}: the downloaded file does not match the sha256 the Hub gives for it")
    return path


def _verified(path: Path) -> bool:
    blob = Path(os.path.realpath(path)).name  # the cache names an LFS file's blob by its sha256
    return not _SHA256.fullmatch(blob) or sha256_file(path) == blob


def _one_line(what: str, where: str, exc: Exception) -> HubError:
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    instead = f"get {where} another way and pass it with --from"
    if isinstance(exc, LocalEntryNotFoundError):
        return HubError(f"{what}: not in the Hugging Face cache, and the Hub cannot be asked (HF_HUB_OFFLINE=1 or "
                        f"no network); {instead}")
    if isinstance(exc, GatedRepoError):
        return HubError(f"{what}: the repo asks for access; accept its terms on the Hub and log in (`hf auth "
                        f"login` or HF_TOKEN), or {instead}")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"{what}: the repo is not there or needs a token (`hf auth login` or HF_TOKEN); {instead}")
    if isinstance(exc, (EntryNotFoundError, RevisionNotFoundError)):
        return HubError(f"{what}: not in the repo (the release may have moved); {instead}")
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return HubError(f"{what}: download failed ({type(exc).__name__}: {first}); run again to resume, or {instead}")


def _reporter(stage: str, progress: Progress) -> type:
    """A tqdm class for ``hf_hub_download`` that reports bytes to ``progress`` and draws nothing itself."""
    from tqdm.std import tqdm

    class _Report(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs.pop("file", None)
            super().__init__(*args, file=io.StringIO(), **kwargs)
            progress(stage, self.n, self.total)

        def display(self, msg=None, pos=None) -> None:
            return None

        def update(self, n=1):
            shown = super().update(n)
            progress(stage, self.n, self.total)
            return shown

    return _Report
