# The tunix-rt kernel image: a Kaggle-like container that runs the bundle's notebook with papermill.
#
# Base image (build arg BASE_IMAGE):
#   python:3.12-slim-bookworm          default: public Python 3.12, like Kaggle's images (Python 3.12)
#   gcr.io/kaggle-images/python        Kaggle's own CPU image (~20 GB unpacked); its packages stay visible
#   gcr.io/kaggle-gpu-images/python    Kaggle's GPU image (CUDA); run with `tunix-rt rehearse --gpus all`
#   tunix-rt/debian:bookworm           registry-free Debian base from docker/make_base_image.sh, for machines
#                                      that reach no registry (CI); python3 (3.11) then comes from apt, and
#                                      kernel/requirements.txt picks its pins by python_version markers
#
# JAX (build arg JAX_ACCELERATOR):
#   cpu      default: kernel/requirements.txt, CPU JAX
#   cuda12   kernel/requirements-gpu.txt, jax[cuda12] (the CUDA 12 plugin and NVIDIA's libraries as wheels, ~3 GB):
#            the container computes on the host's NVIDIA GPU when run with GPUs (the host needs only the driver
#            and the NVIDIA container toolkit). `tunix-rt rehearse --backend docker --gpus all` builds this one.
#
# Build: `tunix-rt rehearse --backend docker` builds it itself (tunix_rt.runners.docker.build_image, context
# with only the files below). By hand: docker build --network host [--build-arg BASE_IMAGE=...]
# [--build-arg JAX_ACCELERATOR=cuda12] -t TAG .
# (--network host: a daemon started by docker/start_dockerd.sh has no bridge network.)
ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}

# Bases without Python (the Debian minbase image) get Debian's python3 + venv; bases with it are untouched.
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Optional extra CA bundle for pip (see docker/ca/README.md): TLS-inspecting proxies need it at build time.
COPY docker/ca/ /opt/tunix-rt/ca/

# The kernel's pinned stack first, so that only a requirements change rebuilds the heavy layer. A venv keeps
# pip away from a distro-managed Python (PEP 668); --system-site-packages keeps a Kaggle base's preinstalled
# packages visible, so only missing pins get installed on top. A Python without ensurepip (Ubuntu-based
# images) gets a venv without pip and installs with the base's own pip module, visible through the same flag.
COPY kernel/requirements.txt kernel/requirements-gpu.txt /opt/tunix-rt/
ARG PAPERMILL_VERSION=2.7.0
ARG IPYKERNEL_VERSION=7.4.0
ARG JAX_ACCELERATOR=cpu
RUN case "${JAX_ACCELERATOR}" in \
        cpu) requirements=/opt/tunix-rt/requirements.txt ;; \
        cuda12) requirements=/opt/tunix-rt/requirements-gpu.txt ;; \
        *) echo "JAX_ACCELERATOR must be cpu or cuda12, not ${JAX_ACCELERATOR}" >&2; exit 1 ;; \
    esac \
    && (python3 -m venv --system-site-packages /opt/venv \
        || python3 -m venv --clear --without-pip --system-site-packages /opt/venv) \
    && if [ -f /opt/tunix-rt/ca/ca-certificates.crt ]; then export PIP_CERT=/opt/tunix-rt/ca/ca-certificates.crt; fi \
    && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        -r "${requirements}" \
        "papermill==${PAPERMILL_VERSION}" "ipykernel==${IPYKERNEL_VERSION}" \
    && /opt/venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"

# Kaggle's runtime layout and environment. KAGGLE_KERNEL_RUN_TYPE (Batch | Interactive) is set per run.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONUSERBASE=/root/.local \
    MKL_THREADING_LAYER=GNU \
    JUPYTER_PLATFORM_DIRS=1
RUN mkdir -p /kaggle/input /kaggle/working /kaggle/temp
WORKDIR /kaggle/working
ENTRYPOINT ["/usr/bin/env"]
CMD ["python3"]
