#!/usr/bin/env bash
# Recreate the peer-framework venv that scripts/bench.py, bench_contention.py and profile_layers.py
# compare tlkit against (torch, TensorFlow/Keras 3, ONNX Runtime, albumentations), pinned to the
# versions BENCHMARKS.md was measured with, so another machine reproduces the same comparison.
#
#   bash scripts/setup_peers.sh              # creates /work/peers
#   bash scripts/setup_peers.sh /tmp/peers   # or any other path (then pass --peer-python to the scripts)
#
# The peers never go into tlkit's own Python: they bring their own BLAS/OpenMP builds, and the
# benchmarks run each framework in its own process anyway. Downloads ~1 GB; takes a few minutes.
set -euo pipefail

VENV="${1:-/work/peers}"
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/python" ]]; then
    echo "$VENV already holds a venv; remove it first to rebuild it from scratch." >&2
    exit 1
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip

# torch first and on its own: exactly 2.13.0 (the CPU build; a range would pull a CUDA build).
"$VENV/bin/python" -m pip install "torch==2.13.0"

# The frameworks, then every package under them pinned through a constraints file, so pip resolves
# to the same set that was measured rather than to whatever is newest today.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
cat > "$constraints" <<'EOF'
absl-py==2.5.1
albucore==0.0.24
annotated-types==0.8.0
astunparse==1.6.3
certifi==2026.10.19.post1
charset-normalizer==3.5.3
filelock==4.3.1
flatbuffers==25.12.19
fsspec==2026.9.0
gast==0.7.0
google-pasta==0.2.0
grpcio==1.85.3
h5py==3.14.0
idna==3.20
Jinja2==3.1.6
libclang==18.1.1
Markdown==3.11.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
ml_dtypes==0.6.0
mpmath==1.3.0
namex==0.1.0
networkx==3.6.1
numpy==2.4.6
opencv-python-headless==5.0.0.93
opt_einsum==3.4.0
optree==0.20.0
packaging==26.4
pillow==13.0.0
protobuf==7.36.2
pydantic==2.14.4
pydantic_core==2.50.5
Pygments==2.21.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
scipy==1.17.1
simsimd==6.5.16
six==1.17.0
stringzilla==5.3.2
sympy==1.14.0
tensorboard-data-server==0.7.2
termcolor==3.3.0
typing_extensions==4.16.0
typing-inspection==0.4.5
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==2.5.2
EOF

"$VENV/bin/python" -m pip install -c "$constraints" \
    "tensorflow-cpu==2.21.0" "keras==3.15.1" "tensorboard==2.21.0" "tf_keras==2.21.0" \
    "onnxruntime==1.32.0" "onnx==1.23.2" \
    "albumentations==2.0.8" "threadpoolctl==3.8.0"

"$VENV/bin/python" - <<'EOF'
import keras, onnx, onnxruntime, tensorflow, tf_keras, threadpoolctl, torch
print("peers ready:", "torch", torch.__version__, "| tensorflow", tensorflow.__version__, "| keras", keras.__version__,
      "| onnxruntime", onnxruntime.__version__, "| onnx", onnx.__version__)
EOF
