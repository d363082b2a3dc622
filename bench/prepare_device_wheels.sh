#!/usr/bin/env bash
# Fill the ignored .whl/ folder with the pure-Python wheels bench/device_check.sh needs on a GPU host that has
# CUDA JAX, flax, optax and orbax but no Tunix and no network (this workplace's device image: Python 3.12,
# jax 0.11.2; /work/.library/device/KINDS.md lists what it holds).
#
#   bench/prepare_device_wheels.sh            # download into .whl/ (needs PyPI), print the list and the size
#   bench/prepare_device_wheels.sh --verify   # also prove the set complete: a clean Python 3.12 venv with only
#                                             # the device's packages (CPU jax 0.11.2) runs device_check.sh
#
# The set is exactly what the training code imports and the device image lacks, found by that --verify run:
# google-tunix and qwix, and what Tunix's SFT modules import at load time (metrax, clu, tensorboardX,
# perfetto). Everything else they import (transformers, safetensors, jaxtyping, pandas, pillow, einops, wrapt,
# tqdm, huggingface_hub …) is on the device image already, and a second copy would shadow it, so it is not
# carried. Versions: what the project's `kernel` extra resolves to (pip's choice for google-tunix==0.1.7).
# All are py3-none-any, so --python-version/--platform only keep pip from choosing by this machine's Python.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.whl
py=${PYTHON:-python3}
WHEELS=(
  google-tunix==0.1.7   # Tunix: PeftTrainer, the Gemma 3 model (pinned in pyproject's kernel extra)
  qwix==0.1.8           # LoRA adapters (training/model.py apply_lora)
  google-metrax==0.2.4  # imported by tunix.sft.metrics_logger (metrax.logging)
  clu==0.0.12           # imported by metrax (clu.metrics)
  tensorboardX==2.6.5   # imported by metrax.logging.tensorboard_backend
  perfetto==0.59.1      # imported by tunix.perf (PeftTrainer's perf tracer)
)
LIMIT_BYTES=$((64 * 1024 * 1024))  # the device tool carries at most 64 MiB of working tree per call

mkdir -p "$dest"
rm -f "$dest"/*.whl  # one version of each: two of a package stop the whole install there
"$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" "${WHEELS[@]}"

total=0
for wheel in "$dest"/*.whl; do
  size=$(stat -c %s "$wheel")
  total=$((total + size))
  printf '%10d  %s\n' "$size" "$(basename "$wheel")"
done
printf '%10d  total (%d wheels) in .whl/\n' "$total" "$(ls "$dest"/*.whl | wc -l)"
if [ "$total" -gt "$LIMIT_BYTES" ]; then
  echo "prepare_device_wheels: .whl/ holds $total bytes, over the 64 MiB a device call carries" >&2
  exit 1
fi
grep -qx '/.whl/' "$root/.gitignore" || echo "prepare_device_wheels: note: .whl/ is not in .gitignore" >&2

if [ "${1:-}" = "--verify" ]; then
  # A clean venv shaped like the device: CPU builds of its JAX, and only packages the device image lists.
  venv=$(mktemp -d "${TMPDIR:-/tmp}/tunix-rt-device-venv-XXXXXX")
  trap 'rm -rf "$venv"' EXIT
  "${PYTHON312:-python3.12}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    jax==0.11.2 jaxlib==0.11.2 flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 \
    transformers==5.17.0 safetensors==0.8.0 tokenizers==0.23.2 huggingface_hub==1.33.0 sentencepiece==0.2.2 \
    jaxtyping==0.3.11 jinja2 pillow pandas einops wrapt tqdm
  PYTHON="$venv/bin/python" TUNIX_RT_DEVICE_CHECK_CPU=1 "$root/bench/device_check.sh" \
    "$(mktemp -d "${TMPDIR:-/tmp}/tunix-rt-device-check-XXXXXX")"
fi
