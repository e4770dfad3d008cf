"""Point clouds: the type, readers, transforms and exact sampling."""
from .cloud import PointCloud
from .io import SUPPORTED_SUFFIXES, is_supported, iter_clouds, read_points
from .transforms import convert_up_axis, normalize, resample

__all__ = ["PointCloud", "SUPPORTED_SUFFIXES", "convert_up_axis", "is_supported", "iter_clouds",
           "normalize", "read_points", "resample"]
