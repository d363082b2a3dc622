"""The Docker runner: build the repo's kernel image and run the bundle's notebook in a Kaggle-like container.

The container sees what a Kaggle batch kernel sees: the notebook executed by papermill with
``KAGGLE_KERNEL_RUN_TYPE=Batch``, an empty read-only ``/kaggle/input``, and ``/kaggle/working`` (the working
directory) bind-mounted to ``<run-dir>/outputs``. The network is off unless asked for. The console goes live
to the terminal and to ``<run-dir>/raw_log/console.log``; the container is removed whatever happens.

The kernel runs as root, as on Kaggle, and hands ``/kaggle/working`` to the host user when it ends (a chown
inside the container), so a non-root host user can read and delete every output. Running as the host uid
instead would break notebooks that expect Kaggle's root (a writable ``$HOME=/root``, pip installs).

That root is a small one (:func:`hardening`): ``no-new-privileges``, every capability dropped but the three
file ones the kernel needs (``CHOWN`` for the final chown, ``DAC_OVERRIDE`` and ``FOWNER`` to write into the
host user's bind-mounted ``outputs/``), and limits on processes (``--pids-limit``, default 8192: JAX alone
starts a few hundred threads) and memory (``--memory``, default 30g with no swap, the RAM of a Kaggle
session), so a runaway notebook cannot fork-bomb or swap the host. The container is removed on every exit
path Python sees (an end, an error, Ctrl-C, SIGTERM/SIGHUP via interrupts.py), found by a label unique to
the command even when the interrupt came before the SDK handed the container back.

Anything that keeps the notebook from starting (no daemon, an image that cannot be built, found or started)
raises :class:`DockerSetupError`: exit 1, one line naming the daemon address and, for the image, the base-image
way out. ``tunix-rt rehearse --backend auto`` falls back to the local runner on it.

The ``docker`` SDK is imported inside the functions: the CLI must start without it.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import knobs
from ..errors import EXIT_KERNEL_FAILED, EXIT_USAGE, TunixRtError
from ..layout import CONSOLE_LOG, EXECUTED_NOTEBOOK, METADATA_NAME, OUTPUTS_DIR, RAW_LOG_DIR
from ..layout import NOTEBOOK_NAME as NOTEBOOK
from ..paths import kernel_dir, project_root
from . import DEFAULT_MEMORY, DEFAULT_PIDS_LIMIT, RunOutcome, compile_cache
from .gpus import GpuRequest, parse_gpus

if TYPE_CHECKING:
    import docker

IMAGE_REPOSITORY = "tunix-rt/kernel"
BASE_IMAGE_ENV = knobs.BASE_IMAGE.env  # CI: tunix-rt/debian:bookworm (docker/make_base_image.sh)
DOCKERFILE_BASE_IMAGE = "python:3.12-slim-bookworm"  # the Dockerfile's ARG BASE_IMAGE default
LABEL_ROLE = "tunix-rt.role"  # on every image and container this module makes
LABEL_RUN_DIR = "tunix-rt.run-dir"  # on rehearsal containers: which run they belong to
LABEL_INVOCATION = "tunix-rt.invocation"  # on rehearsal containers: the command that made it (clean-up)
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER")  # all a kernel keeps (see the module docstring)

SRC_MOUNT = "/kaggle/src"
INPUT_MOUNT = "/kaggle/input"
WORKING_MOUNT = "/kaggle/working"

# The socket docker/start_dockerd.sh listens on, used when DOCKER_HOST is unset and no system daemon exists.
_PRIVATE_SOCKET = Path(knobs.text(knobs.DOCKER_RUN) or "/run/tunix-rt-docker") / "docker.sock"
_SYSTEM_SOCKET = Path("/var/run/docker.sock")
_HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class DockerSetupError(TunixRtError):
    """Docker could not give the notebook a container: no daemon, or the image cannot be built, found or
    started. Exit 1 (the rehearsal could not run), not a usage error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_KERNEL_FAILED)


def base_image_hint(base_image: str | None) -> str:
    """The way out when the base image cannot be had (no registry)."""
    return (f"base image {base_image or DOCKERFILE_BASE_IMAGE}; without a registry make one with "
            f"docker/make_base_image.sh and pass --base-image tunix-rt/debian:bookworm (or set {BASE_IMAGE_ENV})")


def docker_host() -> str:
    """The daemon address clients use: $DOCKER_HOST, else the system socket, else start_dockerd.sh's."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if not _SYSTEM_SOCKET.exists() and _PRIVATE_SOCKET.exists():
        return f"unix://{_PRIVATE_SOCKET}"
    return f"unix://{_SYSTEM_SOCKET}"


def _client(timeout: int = 60) -> docker.DockerClient:
    """A client for the daemon; one line naming the address and the way out when none answers."""
    import docker

    host = docker_host()
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerSetupError(
            f"no Docker daemon answers at {host} ({_first_line(exc)}); start one with "
            f'eval "$(docker/start_dockerd.sh)" or use --backend local') from exc
    return client


def docker_available(timeout: int = 3) -> bool:
    """True when the docker SDK is installed and a daemon answers a ping within ``timeout`` seconds."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.DockerClient(base_url=docker_host(), timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure (no socket, refused, timeout, bad address) means "not available"
        return False


def dockerfile_path() -> Path:
    return project_root() / "Dockerfile"


def requirements_path(accelerator: str = "cpu") -> Path:
    """The kernel requirements an image is built from: CPU JAX, or CUDA JAX for ``cuda12``."""
    return kernel_dir() / ("requirements-gpu.txt" if accelerator == "cuda12" else "requirements.txt")


def default_base_image() -> str | None:
    """$TUNIX_RT_BASE_IMAGE (read here only), or None for the Dockerfile's own default
    (:data:`DOCKERFILE_BASE_IMAGE`)."""
    return knobs.text(knobs.BASE_IMAGE)


def default_tag(base_image: str | None = None, requirements: Path | None = None, accelerator: str = "cpu") -> str:
    """``tunix-rt/kernel:<hash>``: the hash of everything the image is made of, so an unchanged image is
    found again instead of rebuilt."""
    digest = hashlib.sha256()
    for part in (
        _read_bytes(dockerfile_path()),
        _read_bytes(requirements or requirements_path(accelerator)),
        (base_image or "").encode(),
        accelerator.encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def build_image(
    tag: str | None = None,
    base_image: str | None = None,
    *,
    requirements: Path | None = None,
    accelerator: str = "cpu",
    stream: TextIO | None = sys.stdout,
) -> str:
    """Build the repo's Dockerfile and return the image tag.

    ``tag`` None: the content-hash tag, and an existing image of that tag is reused without a build.
    ``base_image`` None: $TUNIX_RT_BASE_IMAGE, else the Dockerfile's default. ``requirements`` replaces
    ``kernel/requirements.txt`` (tests). ``accelerator`` ``cuda12`` installs CUDA JAX
    (``kernel/requirements-gpu.txt``, build arg ``JAX_ACCELERATOR``). The build log goes to ``stream``.
    """
    import docker

    base_image = base_image or default_base_image()
    client = _client()
    try:
        if tag is None:
            tag = default_tag(base_image, requirements, accelerator)
            try:
                client.images.get(tag)
                _say(stream, f"docker: image {tag} is up to date")
                return tag
            except docker.errors.ImageNotFound:
                pass
        with _build_context(requirements) as context:
            _say(stream, f"docker: building {tag} from {dockerfile_path()} (base {base_image or 'default'})")
            started = time.monotonic()
            buildargs = {"BASE_IMAGE": base_image} if base_image else {}
            if accelerator != "cpu":
                buildargs["JAX_ACCELERATOR"] = accelerator
            try:
                # The low-level API streams the log; network host because the daemon may have no bridge.
                for chunk in client.api.build(
                    path=str(context), tag=tag, buildargs=buildargs, network_mode="host", rm=True,
                    forcerm=True, pull=False, decode=True, labels={LABEL_ROLE: "kernel-image"},
                ):
                    if "stream" in chunk and stream is not None:
                        stream.write(chunk["stream"])
                        stream.flush()
                    if "error" in chunk:
                        raise DockerSetupError(_build_failure(tag, base_image, chunk["error"]))
            except docker.errors.APIError as exc:
                raise DockerSetupError(_build_failure(tag, base_image, _first_line(exc))) from exc
            _say(stream, f"docker: built {tag} in {time.monotonic() - started:.1f}s")
        return tag
    finally:
        client.close()


def run_docker(
    bundle_dir: Path,
    run_dir: Path,
    *,
    image: str | None = None,
    base_image: str | None = None,
    network: str = "none",
    gpus: str | None = None,
    jax_cache: str | None = None,
    stream: TextIO | None = sys.stdout,
    memory: str = DEFAULT_MEMORY,
    pids_limit: int = DEFAULT_PIDS_LIMIT,
) -> RunOutcome:
    """Run the bundle's notebook with papermill in a container and return the outcome.

    ``image`` None builds (or reuses) the default image from ``base_image`` (None: $TUNIX_RT_BASE_IMAGE, else
    the Dockerfile's default); a given tag must exist (build it with :func:`build_image`). ``network``: Docker
    network mode (none, host, bridge). ``gpus``: the GPUs to give the container (``all``, a count,
    ``device=ID,…``; needs the NVIDIA container toolkit), and then the default image is the CUDA-JAX one.
    ``jax_cache``: the compilation cache setting (see :mod:`.compile_cache`). ``memory``/``pids_limit``: the
    container's limits (:func:`hardening`). The console goes to ``stream`` and to
    ``<run-dir>/raw_log/console.log``.
    A notebook failure is an outcome with a non-zero exit code, not an exception; a missing daemon, image or
    GPU runtime raises :class:`DockerSetupError`. Ctrl-C stops and removes the container, then propagates.
    """
    import docker

    bundle_dir = Path(bundle_dir).resolve()
    run_dir = Path(run_dir).resolve()
    notebook = _bundle_notebook(bundle_dir)
    outputs_dir = run_dir / OUTPUTS_DIR
    log_path = run_dir / RAW_LOG_DIR / CONSOLE_LOG
    outputs_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    gpu_request = parse_gpus(gpus) if gpus else None  # a bad value fails before any build
    if image is None:
        image = build_image(base_image=base_image, accelerator="cuda12" if gpus else "cpu", stream=stream)

    client = _client()
    container = None
    finished = False
    invocation = uuid.uuid4().hex
    try:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise DockerSetupError(f"docker image {image} not found at {docker_host()}; build it first, or leave "
                                   "--image out to build the default one") from exc
        with tempfile.TemporaryDirectory(prefix="tunix-rt-kaggle-input-") as input_dir:
            # The bundle is self-contained, so /kaggle/input is empty; it exists, read-only, as on Kaggle.
            os.chmod(input_dir, 0o755)
            kwargs = _container_options(notebook, bundle_dir, input_dir, outputs_dir, run_dir, invocation,
                                        network=network, jax_cache=jax_cache, memory=memory,
                                        pids_limit=pids_limit, gpu_request=gpu_request)
            try:
                container = client.containers.create(image, **kwargs)
            except docker.errors.APIError as exc:
                raise DockerSetupError(f"docker at {docker_host()} could not create the container from {image}: "
                                       f"{_first_line(exc)}") from exc
            started = time.monotonic()
            try:
                container.start()
            except docker.errors.APIError as exc:
                hint = " (--gpus needs an NVIDIA GPU and the NVIDIA container toolkit)" if gpus else ""
                raise DockerSetupError(f"docker at {docker_host()} could not start the container{hint}: "
                                       f"{_first_line(exc)}") from exc
            _say(stream, f"docker: running {notebook} in {image} (container {container.short_id}, "
                         f"network {network}{f', GPUs {gpus}' if gpus else ''})")
            with open(log_path, "w", encoding="utf-8") as log:
                _tee(container.logs(stream=True, follow=True), log, stream)
            status = container.wait()
            wall_s = time.monotonic() - started
            finished = True
    except KeyboardInterrupt:
        _say(stream, "docker: interrupted; stopping the container")
        raise
    finally:
        if container is None:  # interrupted inside create: the daemon may have made it all the same
            container = _created_by(client, invocation)
        if container is not None:
            _remove(client, container, outputs_dir, chowned=finished)
        client.close()

    exit_code = int(status.get("StatusCode", 1))
    detail = f"image {image}, exit {exit_code}"
    if status.get("Error"):
        detail += f": {_first_line(status['Error'].get('Message', status['Error']))}"
    elif exit_code == 137:
        detail += " (killed: out of memory?)"
    return RunOutcome("docker", exit_code, outputs_dir, log_path, wall_s, detail)


def _container_options(notebook: str, bundle_dir: Path, input_dir: str, outputs_dir: Path, run_dir: Path,
                       invocation: str, *, network: str, jax_cache: str | None, memory: str, pids_limit: int,
                       gpu_request: GpuRequest | None) -> dict[str, Any]:
    """The ``containers.create`` keyword arguments of a rehearsal: papermill on the bundle's ``notebook``,
    the Kaggle mounts, the compilation cache, the labels that find it again, the limits and the GPUs."""
    papermill = ["papermill", "--log-output", "--no-progress-bar", "-k", "python3",
                 "--cwd", WORKING_MOUNT, f"{SRC_MOUNT}/{notebook}",
                 f"{WORKING_MOUNT}/{EXECUTED_NOTEBOOK}"]
    # Kaggle runs kernels as root; hand the outputs to the host user at the end, whatever the result.
    volumes = {
        str(bundle_dir): {"bind": SRC_MOUNT, "mode": "ro"},
        input_dir: {"bind": INPUT_MOUNT, "mode": "ro"},
        str(outputs_dir): {"bind": WORKING_MOUNT, "mode": "rw"},
    }
    environment = {"KAGGLE_KERNEL_RUN_TYPE": "Batch"}
    owned = WORKING_MOUNT
    cache = compile_cache.host_dir("docker", jax_cache)
    if cache is not None:  # a warm rehearsal skips recompiling (see compile_cache)
        volumes[str(cache)] = {"bind": compile_cache.CONTAINER_DIR, "mode": "rw"}
        environment.update(compile_cache.kernel_env(compile_cache.CONTAINER_DIR))
        owned += f" {compile_cache.CONTAINER_DIR}"
    script = f'"$@"; rc=$?; chown -R {os.getuid()}:{os.getgid()} {owned}; exit $rc'
    kwargs: dict[str, Any] = dict(
        command=["sh", "-c", script, "papermill", *papermill],
        volumes=volumes,
        working_dir=WORKING_MOUNT,
        environment=environment,
        network_mode=network,
        shm_size="1g",  # Docker's 64 MB default is smaller than any Kaggle machine's
        labels={LABEL_ROLE: "rehearsal", LABEL_RUN_DIR: str(run_dir), LABEL_INVOCATION: invocation},
        **hardening(memory, pids_limit),
    )
    if gpu_request is not None:
        kwargs["device_requests"] = gpu_request.device_requests()
    return kwargs


def hardening(memory: str = DEFAULT_MEMORY, pids_limit: int = DEFAULT_PIDS_LIMIT) -> dict[str, Any]:
    """The container options that keep a kernel's root small (see the module docstring)."""
    return {"security_opt": ["no-new-privileges"], "cap_drop": ["ALL"], "cap_add": list(CAPABILITIES),
            "pids_limit": pids_limit, "mem_limit": memory, "memswap_limit": memory}


def _created_by(client: docker.DockerClient, invocation: str) -> Any:
    """The container this command made, looked up by its label (None when there is none)."""
    import docker

    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_INVOCATION}={invocation}"})
    except docker.errors.DockerException:
        return None
    return found[0] if found else None


def _bundle_notebook(bundle_dir: Path) -> str:
    """The notebook file name inside the bundle: kernel-metadata.json's code_file, else the default."""
    if not bundle_dir.is_dir():
        raise TunixRtError(f"{bundle_dir}: no bundle folder; run tunix-rt bundle first", EXIT_USAGE)
    name = NOTEBOOK
    metadata = bundle_dir / METADATA_NAME
    if metadata.is_file():
        try:
            name = json.loads(metadata.read_text(encoding="utf-8")).get("code_file") or NOTEBOOK
        except (OSError, ValueError, AttributeError, RecursionError) as exc:
            raise TunixRtError(f"{metadata}: unreadable kernel metadata ({type(exc).__name__})", EXIT_USAGE) \
                from None
        if not isinstance(name, str):
            raise TunixRtError(f"{metadata}: code_file must be a file name", EXIT_USAGE)
    if "/" in name or not (bundle_dir / name).is_file():
        raise TunixRtError(f"{bundle_dir / name}: the bundle's notebook is missing", EXIT_USAGE)
    return name


def _tee(chunks: Iterator[bytes], log: TextIO, stream: TextIO | None) -> None:
    """Copy the container's output, line by line with credentials redacted (as the local runner does), to
    the log file and the console as it arrives."""
    from ..redact import Redactor

    redactor = Redactor()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""

    def emit(text: str) -> None:
        text = redactor.redact(text)
        log.write(text)
        log.flush()
        if stream is not None:
            stream.write(text)
            stream.flush()

    for chunk in chunks:
        pending += decoder.decode(chunk)
        complete, newline, pending = pending.rpartition("\n")
        if newline:
            emit(complete + newline)
    pending += decoder.decode(b"", final=True)
    if pending:
        emit(pending)


def _remove(client: docker.DockerClient, container: Any, outputs_dir: Path, *, chowned: bool) -> None:
    """Remove the container (running or not). When it did not end on its own (Ctrl-C, an error) its chown
    never ran, so a non-root host user gets the outputs back through a short helper container."""
    import docker

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        print(f"docker: could not remove container {container.short_id}: {_first_line(exc)}", file=sys.stderr)
    if chowned or os.getuid() == 0:
        return
    try:
        client.containers.run(
            container.image.id, ["chown", "-R", f"{os.getuid()}:{os.getgid()}", WORKING_MOUNT],
            volumes={str(outputs_dir): {"bind": WORKING_MOUNT, "mode": "rw"}}, network_mode="none",
            labels={LABEL_ROLE: "chown"}, remove=True, **hardening(),
        )
    except docker.errors.DockerException as exc:
        print(f"docker: could not hand {outputs_dir} back to uid {os.getuid()}: {_first_line(exc)}",
              file=sys.stderr)


@contextmanager
def _build_context(requirements: Path | None) -> Iterator[Path]:
    """A build context holding only what the Dockerfile copies, plus the host's CA bundle when it has one
    (pip inside the build must trust a TLS-inspecting proxy's CA; see docker/ca/README.md)."""
    root = project_root()
    with tempfile.TemporaryDirectory(prefix="tunix-rt-build-") as tmp:
        context = Path(tmp)
        shutil.copyfile(dockerfile_path(), context / "Dockerfile")
        (context / "kernel").mkdir()
        shutil.copyfile(requirements or requirements_path(), context / "kernel" / "requirements.txt")
        shutil.copyfile(requirements or requirements_path("cuda12"), context / "kernel" / "requirements-gpu.txt")
        ca_dir = context / "docker" / "ca"
        ca_dir.mkdir(parents=True)
        readme = root / "docker" / "ca" / "README.md"
        if readme.is_file():
            shutil.copyfile(readme, ca_dir / "README.md")
        ca_bundle = _host_ca_bundle()
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, ca_dir / "ca-certificates.crt")
        yield context


def _host_ca_bundle() -> Path | None:
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"))
    for candidate in (*env, *_HOST_CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _build_failure(tag: str, base_image: str | None, error: str) -> str:
    return f"docker build of {tag} at {docker_host()} failed: {_first_line(error)} ({base_image_hint(base_image)})"


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TunixRtError(f"{path}: cannot read ({exc.strerror})", EXIT_USAGE) from exc


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def _say(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()

