#!/usr/bin/env bash
# The GPU check in one command: bench/accelerator.py (Gemma 3 1B, full fine-tuning and LoRA, sequence 1024 and
# 512, one step profiled) on a single-GPU Linux host whose Python already has CUDA JAX, flax, optax and orbax
# but not Tunix or qwix, and no network. Finishes within 8 minutes; writes accelerator.json (and the profile's
# trace) into OUTDIR.
#
#   bench/prepare_device_wheels.sh          # beforehand, where PyPI is reachable: fills .whl/ (~1.3 MB)
#   bench/device_check.sh OUTDIR [FLAG…]    # on the GPU host, from a checkout carrying .whl/
#
# The missing pure-Python packages are installed from .whl/ with --no-index --no-deps into a temporary
# --target folder put first on PYTHONPATH (nothing touches the host's own environment), and the checkout's
# training/ folder is imported as the package `training`, so tunix-rt itself needs no installation.
# Extra FLAGs go to bench/accelerator.py.
#
# Environment: PYTHON (default python3); TUNIX_RT_DEVICE_CHECK_BUDGET_S (the bench's budget, default 400 s);
# TUNIX_RT_DEVICE_CHECK_CPU=1 rehearses the script here: --tiny on CPU, wheels from .whl/ when it has any.
# Exit: 0 every case measured; 1 a case did not (the JSON says which); 2 bad usage, no wheels, no GPU.
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bench/device_check.sh OUTDIR [bench/accelerator.py flags]" >&2
  exit 2
fi
out=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
cpu=${TUNIX_RT_DEVICE_CHECK_CPU:-0}
budget=${TUNIX_RT_DEVICE_CHECK_BUDGET_S:-400}
started=$(date +%s)
say() { echo "device_check: $*" >&2; }

mkdir -p "$out"
out=$(cd "$out" && pwd)  # the bench runs from the checkout's root
shopt -s nullglob
wheels=("$root"/.whl/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  site=$(mktemp -d "${TMPDIR:-/tmp}/tunix-rt-site-XXXXXX")
  trap 'rm -rf "$site"' EXIT
  "$py" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" "${wheels[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  say "installed ${#wheels[@]} wheels from .whl/ into a temporary --target folder"
elif [ "$cpu" != 1 ]; then
  say "no wheels in .whl/: run bench/prepare_device_wheels.sh where PyPI is reachable, and carry .whl/"
  exit 2
fi

# Every import the bench needs, and the backend JAX starts, before minutes are spent.
want=$([ "$cpu" = 1 ] && echo cpu || echo gpu)
if ! JAX_PLATFORMS=$([ "$cpu" = 1 ] && echo cpu || echo "${JAX_PLATFORMS:-}") "$py" - "$want" <<'EOF'
import importlib, importlib.metadata, sys
for module in ("jax", "flax", "optax", "orbax.checkpoint", "qwix", "tunix.sft.peft_trainer",
               "tunix.models.gemma3.model"):
    importlib.import_module(module)
import jax
backend, devices = jax.default_backend(), jax.devices()
versions = []
for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "google-tunix", "qwix"):
    try:
        versions.append(f"{dist} {importlib.metadata.version(dist)}")
    except importlib.metadata.PackageNotFoundError:
        versions.append(f"{dist} ?")
print(f"device_check: python {sys.version.split()[0]}; {', '.join(versions)}", file=sys.stderr)
print(f"device_check: JAX backend {backend}: {len(devices)} x {devices[0].device_kind}", file=sys.stderr)
if backend != sys.argv[1]:
    sys.exit(f"device_check: JAX runs on {backend}, not {sys.argv[1]} (is this JAX's CUDA build?)")
EOF
then
  exit 2
fi

cd "$root"
status=0
if [ "$cpu" = 1 ]; then
  "$py" bench/accelerator.py --tiny --profile --out "$out" "$@" || status=$?
else
  # The bench keeps to its budget; the hard stop is a backstop for a hung worker.
  timeout -k 10 $((budget + 40)) "$py" bench/accelerator.py --budget-s "$budget" --profile --out "$out" "$@" \
    || status=$?
fi
say "done in $(($(date +%s) - started)) s (exit $status): $out/accelerator.json"
exit $status
