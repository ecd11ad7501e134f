#!/usr/bin/env bash
# Builds the peer benchmark's own venv with the simpletuner combination that issue 11
# records as installing on a CPU machine. expertune is not installed here: it pins
# diffusers 0.42 and transformers 5, simpletuner 3.1.6 wants diffusers 0.36 and
# transformers 4, so the harness runs `expertune train` from the project's own venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PEER_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
free_gb=$(df -Pk "$here" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "$free_gb" -lt 15 ]; then
  echo "bench-peer: only ${free_gb} GB free under $here; the peer venv needs about 15 GB" >&2
  exit 3
fi
if [ ! -x "$venv/bin/python" ]; then "$python" -m venv "$venv"; fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
"${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" "simpletuner==3.1.6" "diffusers==0.36.0" "transformers<5" "torchao==0.14.1" \
  "huggingface-hub<1"
touch "$venv/.installed"
