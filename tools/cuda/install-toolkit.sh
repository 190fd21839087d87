#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolchain from PyPI wheels (tools/cuda/requirements.txt) into a
# virtual environment and prints the folder to use as CUDA_HOME (bin/nvcc, include/, nvvm/).
# Needs python3 with venv and pip; no system CUDA, no driver and no GPU.
#
#   usage: tools/cuda/install-toolkit.sh [DIR]     (default DIR: target/cuda-toolkit)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/target/cuda-toolkit}"
venv="$dir/venv"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tools/cuda/requirements.txt" >&2

# The wheels share the namespace package `nvidia`; the CUDA 13 ones lay out a CUDA_HOME in cu13/.
home="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
if [ ! -x "$home/bin/nvcc" ] || [ ! -x "$home/nvvm/bin/cicc" ]; then
    echo "install-toolkit: $home has no bin/nvcc or nvvm/bin/cicc; the wheels' layout changed" >&2
    exit 1
fi
echo "$home"
