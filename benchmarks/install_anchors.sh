#!/usr/bin/env bash
# Install the two public CPAB libraries that benchmarks/cpab.py compares against ("the anchors") into the folder
# _anchors/ at the repository root, OUTSIDE the project's environment. Nothing is installed into .venv and pstn never
# imports either library: benchmarks/cpab.py puts _anchors/ on sys.path for its own run only.
#
#   bash benchmarks/install_anchors.sh          # from the repository root; rerun to reinstall
#
# - libcpab 0.1.3 (PyPI): pure Python. Its wheel ships no C++ sources, so it always takes its pure-PyTorch path.
# - difw 0.0.31 (PyPI, the latest): 1-D only; it compiles its C++ with torch.utils.cpp_extension when imported.
#   Both need numpy, scipy, matplotlib, torch (and libcpab setuptools), which .venv already has; the JIT build
#   also needs a C++ compiler and the `ninja` program. If `ninja` is not on PATH, its PyPI wheel is put into
#   _anchors/ too (benchmarks/cpab.py adds _anchors/bin to PATH).
# Finally the script imports the anchors once, through benchmarks/cpab.py --build-anchors, so that difw's C++ is
# compiled now (both its own build and the -O3 rebuild, cached under _anchors/torch_extensions) and not during the
# timed run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TARGET="$ROOT/_anchors"

cd "$ROOT"
echo "installing the anchors into $TARGET with $PY"
"$PY" -m pip install --disable-pip-version-check --no-deps --upgrade --target "$TARGET" \
    "libcpab==0.1.3" "difw==0.0.31"

# Their declared dependencies, checked rather than installed into .venv.
"$PY" - <<'EOF'
import importlib
missing = []
for name in ["numpy", "scipy", "matplotlib", "torch", "setuptools"]:
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    raise SystemExit(f"the anchors need {missing}, which this Python lacks")
print("dependencies present: numpy, scipy, matplotlib, torch, setuptools")
EOF

if ! command -v c++ >/dev/null 2>&1; then
    echo "warning: no C++ compiler (c++) on PATH: difw will fall back to its pure-PyTorch path" >&2
fi
if command -v ninja >/dev/null 2>&1; then
    echo "ninja found at $(command -v ninja)"
else
    echo "ninja not on PATH: installing its wheel into $TARGET"
    "$PY" -m pip install --disable-pip-version-check --no-deps --upgrade --target "$TARGET" ninja
fi

"$PY" "$ROOT/benchmarks/cpab.py" --build-anchors
