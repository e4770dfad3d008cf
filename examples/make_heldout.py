"""Write held-out synthetic shapes (class sub-folders of .npy) for the demo's zero-shot evaluation.

    python examples/make_heldout.py runs/demo/heldout [--per-class 20] [--seed 1000]

The training recipe draws its shapes from seed 0; these come from another seed, so they are new
instances of the same primitives.
"""
from __future__ import annotations

import argparse

from vitlens_cli.data.synthetic import write_folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    write_folder(args.out, args.per_class, args.seed)
    print(f"wrote held-out synthetic shapes to {args.out}")


if __name__ == "__main__":
    main()
