"""Write a few simple shapes (open3d primitives, surface-sampled) for the offline demo.

    python examples/make_shapes.py examples/shapes
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import open3d as o3d

SHAPES = {
    "box": lambda: o3d.geometry.TriangleMesh.create_box(1.0, 0.6, 0.4),
    "sphere": lambda: o3d.geometry.TriangleMesh.create_sphere(0.5, resolution=30),
    "cylinder": lambda: o3d.geometry.TriangleMesh.create_cylinder(0.3, 1.2, resolution=40),
    "cone": lambda: o3d.geometry.TriangleMesh.create_cone(0.4, 1.0, resolution=40),
    "torus": lambda: o3d.geometry.TriangleMesh.create_torus(0.5, 0.15),
}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, make in SHAPES.items():
        mesh = make()
        mesh.compute_vertex_normals()
        mesh.paint_uniform_color(rng.uniform(0.2, 0.9, 3))
        o3d.utility.random.seed(0)
        cloud = mesh.sample_points_uniformly(number_of_points=4096)
        o3d.io.write_point_cloud(str(out / f"{name}.ply"), cloud, write_ascii=False)
    print(f"wrote {len(SHAPES)} shapes to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/shapes")
