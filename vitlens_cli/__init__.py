"""vitlens: ViT-Lens for 3D point clouds — embed, evaluate, train and ask, on CPU or GPU."""
from .models import ViTLens, list_models, load_model, prepare_points
from .points import PointCloud, read_points

__version__ = "0.1.0"
__all__ = ["PointCloud", "ViTLens", "__version__", "list_models", "load_model", "prepare_points", "read_points"]
