#!/usr/bin/env bash
# GPU check of aura-stream on one GPU, no network: extract / score / hooked generate / fold on a
# ~1B-parameter random Llama in bfloat16 (bench/gpu_check.py; ~2-4 minutes on one H200).
#
#   bash bench/gpu_check.sh                      # from anywhere; runs from the repo root
#   bash bench/gpu_check.sh --cpu --tiny         # CPU smoke test of the same code path
#   OUT=results.md bash bench/gpu_check.sh       # also write the markdown report to $OUT
#
# Needs PyTorch (preinstalled) and aura-stream's pure-Python dependencies. Nothing is downloaded:
# missing modules are listed and the script stops, unless WHEELHOUSE names a directory of wheels,
# from which they are installed offline (pip --no-index --no-deps). aura-stream itself is used from
# this checkout (PYTHONPATH), installed or not.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# Import every module the check uses; an ImportError names the module that is really missing
# (e.g. zarr's google_crc32c), which is what has to be installed.
missing="$("$PY" - <<'EOF'
import importlib
mods = ["torch", "transformers", "tokenizers", "safetensors", "numpy", "zarr", "zarr.codecs", "numcodecs",
        "dask", "dask.array", "dask.diagnostics", "numba", "tqdm", "yaml", "psutil"]
pip_name = {"yaml": "PyYAML", "google_crc32c": "google-crc32c", "sklearn": "scikit-learn"}
miss = []
for m in mods:
    try:
        importlib.import_module(m)
    except ImportError as exc:
        name = (exc.name or m).split(".")[0]
        miss.append(pip_name.get(name, name))
print(" ".join(dict.fromkeys(miss)))
EOF
)"
if [ -n "$missing" ]; then
    if [ -n "${WHEELHOUSE:-}" ] && [ -d "$WHEELHOUSE" ]; then
        echo "installing missing modules offline from $WHEELHOUSE: $missing" >&2
        # shellcheck disable=SC2086
        "$PY" -m pip install --no-index --no-deps --find-links "$WHEELHOUSE" $missing
    else
        echo "missing Python modules: $missing" >&2
        echo "no network here: install them from local wheels (pip install --no-index --find-links DIR $missing," >&2
        echo "or set WHEELHOUSE=DIR and rerun), or use an environment where 'pip install -e .' already worked." >&2
        exit 2
    fi
fi
"$PY" -c "import aura_stream" || { echo "cannot import aura_stream from $ROOT" >&2; exit 2; }
if [ -n "${OUT:-}" ]; then
    exec "$PY" bench/gpu_check.py --md "$OUT" "$@"
fi
exec "$PY" bench/gpu_check.py "$@"
