#!/usr/bin/env bash
# CI: the built wheel (not the editable checkout) works for a new user. Build it, install it into a fresh venv
# with the torch pins of the Makefile, and from a folder outside the source tree train two steps of the default
# 3D recipe and embed a cloud written by that venv's own Python, with the trained lens and with the zoo's tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/vitlens-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A failing step names itself (a pipeline's silent non-zero status ended a CI run with no message once).
trap 'echo "wheel smoke: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/vitlens-*.whl)
python3 - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
missing = [n for n in ("vitlens_cli/recipes/tiny-cpu.yaml", "vitlens_cli/py.typed") if n not in names]
if missing:
    sys.exit(f"wheel lacks {', '.join(missing)}")
EOF

python3 -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install -q --upgrade pip
# shellcheck disable=SC2046  # the pins are several words
"$py" -m pip install -q $(make -s --no-print-directory -C "$repo" torch-pins)
"$py" -m pip install -q "$wheel"

cd "$work"
"$work/venv/bin/vitlens" --version
# captured first: `grep -q` in a pipeline exits at its match, and under pipefail a writer still writing fails
recipes=$("$work/venv/bin/vitlens" train --list-recipes)
grep -qx tiny-cpu <<<"$recipes" || { echo "wheel smoke: tiny-cpu is not among the shipped recipes: $recipes" >&2; exit 1; }
"$work/venv/bin/vitlens" train --modality 3d max_steps=2 save_every=2 data.options.size=16 batch_size=8 \
    output_dir="$work/train"
# .xyz: an extension only the 3D modality reads (a .npy would need the modality named)
"$py" -c "import numpy as np; np.savetxt('cloud.xyz', np.random.default_rng(0).normal(size=(2048, 3)))"
"$work/venv/bin/vitlens" embed cloud.xyz --checkpoint "$work/train/final" --out trained.npy
"$work/venv/bin/vitlens" embed cloud.xyz --model tiny-omni --out tiny.npy
"$py" - <<'EOF'
import numpy as np
for name in ("trained.npy", "tiny.npy"):
    emb = np.load(name)
    assert emb.shape[0] == 1 and np.isfinite(emb).all() and abs(float(np.linalg.norm(emb[0])) - 1) < 1e-4, (name, emb)
print("wheel smoke: train and embed from the installed wheel work")
EOF
