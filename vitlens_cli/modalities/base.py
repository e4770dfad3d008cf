"""The modality plug-in record and its registry.

A modality owns how its files are read, what its checkpoints expect to be fed (the preprocessing
*contract*, a frozen dataclass recorded in the model card) and the name of the lens kind that turns
the prepared tensor into tokens (registered in :mod:`vitlens_cli.lenses`). Adding one is one module
that builds a :class:`Modality` and one entry in ``_BUILTIN`` (or a :func:`register` call).

The built-in modules are imported on first use, so importing this package costs no torch.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import VitlensError

if TYPE_CHECKING:
    import torch


class ModalityError(VitlensError):
    """An input cannot be prepared the way a checkpoint's contract asks (wrong shape, too short, …)."""


class ModalityFileError(VitlensError):
    """A file could not be read as the modality it was given to, or its modality is unknown."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path


@dataclass(frozen=True)
class Modality:
    """One modality: readers, preprocessing contract and lens kind.

    ``extensions`` are the suffixes only this modality reads (so the modality follows from the file
    name); ``ambiguous_extensions`` are suffixes it also reads but shares with others (``.npy``,
    ``.png``, ``.jpg``): those need the modality named explicitly.
    """

    name: str
    lens: str
    extensions: tuple[str, ...]
    ambiguous_extensions: tuple[str, ...]
    reader: Callable[[Path], Any]
    preprocessor: Callable[[Any, Any], torch.Tensor]
    contract: type | None = None
    defaults: Callable[[], Any] | None = None
    description: str = ""
    lens_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.contract is None and self.defaults is None:
            raise ModalityError(f"modality {self.name!r} needs a contract type or a defaults factory")
        if not self.lens_kinds:
            object.__setattr__(self, "lens_kinds", (self.lens,))

    @property
    def suffixes(self) -> tuple[str, ...]:
        return self.extensions + self.ambiguous_extensions

    @property
    def contract_type(self) -> type:
        """The contract dataclass (a modality whose contract lives in a heavier module names it lazily)."""
        return self.contract if self.contract is not None else type(self.default_contract())

    def default_contract(self) -> Any:
        """The released ``vitlensL`` settings for this modality."""
        return self.contract() if self.defaults is None else self.defaults()

    def contract_to_dict(self, contract: Any) -> dict[str, Any]:
        """The contract as JSON-ready values (what a model card or an embedding manifest stores)."""
        return {f.name: _plain(getattr(contract, f.name)) for f in fields(contract)}

    def contract_from_dict(self, data: dict[str, Any]) -> Any:
        """A contract from :meth:`contract_to_dict` output; fields left out keep their defaults."""
        cls = self.contract_type
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModalityError(f"{self.name} preprocessing has no field(s) {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(known))})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        base = self.default_contract()
        try:
            return replace(base, **values)
        except (TypeError, ValueError) as exc:
            raise ModalityError(f"{self.name} preprocessing: {exc}") from exc

    def read(self, path: str | Path) -> Any:
        """The raw signal in ``path``; every failure is a one-line error naming the file."""
        path = Path(path)
        if path.suffix.lower() not in self.suffixes:
            raise ModalityFileError(path, f"{self.name} files are {' '.join(self.suffixes)}, "
                                          f"not '{path.suffix or path.name}'")
        if not path.is_file():
            raise ModalityFileError(path, "no such file")
        if path.stat().st_size == 0:
            raise ModalityFileError(path, "empty file")
        return self.reader(path)

    def preprocess(self, raw: Any, contract: Any = None) -> torch.Tensor:
        """The lens input for one item (stack items along a new first axis to batch them)."""
        contract = self.default_contract() if contract is None else contract
        if not isinstance(contract, self.contract_type):
            raise ModalityError(f"{self.name} needs a {self.contract_type.__name__} contract, "
                                f"got {type(contract).__name__}")
        return self.preprocessor(raw, contract)

    def prepare(self, path: str | Path, contract: Any = None) -> torch.Tensor:
        """``preprocess(read(path))``, with preprocessing failures also naming the file."""
        raw = self.read(path)
        try:
            return self.preprocess(raw, contract)
        except ModalityError as exc:
            raise ModalityFileError(path, str(exc)) from exc


_BUILTIN: dict[str, str] = {
    "3d": "vitlens_cli.modalities.points",
    "depth": "vitlens_cli.modalities.depth",
    "audio": "vitlens_cli.modalities.audio",
    "tactile": "vitlens_cli.modalities.tactile",
    "eeg": "vitlens_cli.modalities.eeg",
    "image": "vitlens_cli.modalities.image",
}
_REGISTRY: dict[str, Modality] = {}


def register(modality: Modality, *, replace_existing: bool = False) -> Modality:
    """Add a modality plug-in (third-party modules call this at import)."""
    if modality.name in _REGISTRY and not replace_existing:
        raise ModalityError(f"modality {modality.name!r} is already registered")
    _REGISTRY[modality.name] = modality
    return modality


def modality_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


def get_modality(name: str) -> Modality:
    """The registered modality called ``name`` (``3d``, ``depth``, ``audio``, ``tactile``, ``eeg``, ``image``)."""
    key = name.strip().lower()
    if key not in _REGISTRY and key in _BUILTIN:
        module = importlib.import_module(_BUILTIN[key])
        _REGISTRY.setdefault(key, module.MODALITY)
    if key not in _REGISTRY:
        raise ModalityError(f"unknown modality {name!r} (known: {', '.join(modality_names())})")
    return _REGISTRY[key]


def list_modalities() -> list[Modality]:
    return [get_modality(name) for name in modality_names()]


def modality_for_path(path: str | Path, explicit: str | None = None) -> Modality:
    """The modality that reads ``path``: ``explicit`` if given, else the one its extension names.

    Ambiguous extensions (``.npy``, ``.png``, ``.jpg``, …) and unknown ones are one-line errors
    naming the file and the modalities it could be.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    shown = suffix or path.name
    if explicit is not None:
        modality = get_modality(explicit)
        if suffix not in modality.suffixes:
            raise ModalityFileError(path, f"{modality.name} files are {' '.join(modality.suffixes)}, not '{shown}'")
        return modality
    modalities = list_modalities()
    owners = [m for m in modalities if suffix in m.extensions]
    if len(owners) == 1:
        return owners[0]
    readers = [m.name for m in modalities if suffix in m.suffixes]
    if readers:
        raise ModalityFileError(path, f"'{shown}' could be {_or(readers)}: name the modality (--modality)")
    raise ModalityFileError(path, f"unsupported file type '{shown}' (no modality reads it)")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"



def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (parsers raise many types and long texts)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
