"""3D point clouds and meshes as a modality: the readers of :mod:`vitlens_cli.points` and
:func:`~vitlens_cli.models.preprocess.prepare_points`, whose contract is the model card's
:class:`~vitlens_cli.models.config.Preprocess`.

``vitlens_cli.models`` is imported on first use only: looking a file's modality up must not build
the model layer (which itself may consult this registry).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..points import PointCloud, read_points
from ..points.io import SUPPORTED_SUFFIXES
from .base import Modality

if TYPE_CHECKING:
    from ..models.config import Preprocess

AMBIGUOUS = (".npy", ".npz")


def default_contract() -> Preprocess:
    """The one-stop ``vitlensL`` point tower: 8192 points by FPS, xyz, y-up, normalised."""
    from ..models.config import Preprocess

    return Preprocess(num_points=8192)


def read(path: Path) -> PointCloud:
    return read_points(path)


def preprocess(cloud: PointCloud, contract: Preprocess) -> torch.Tensor:
    """``(num_points, channels)`` float32."""
    from ..models.preprocess import prepare_points

    return torch.from_numpy(prepare_points(cloud, contract))


MODALITY = Modality(
    name="3d", lens="point_bert", lens_kinds=("point_bert", "pnsa"), defaults=default_contract,
    extensions=tuple(s for s in SUPPORTED_SUFFIXES if s not in AMBIGUOUS), ambiguous_extensions=AMBIGUOUS,
    reader=read, preprocessor=preprocess,
    description="point clouds and meshes (FPS/kNN Point-BERT or PointNet++ lens)",
)
