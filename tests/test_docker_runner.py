"""The Docker runner against a real dockerd: image build, notebooks in a Kaggle-like container, cleanup.

Outside CI the tests skip when no daemon answers; in CI (``$CI`` set) a missing daemon is a failure, because
``.ci/run`` starts one (docker/start_dockerd.sh). Start one for development with
``eval "$(docker/start_dockerd.sh)" && docker/make_base_image.sh``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from tunix_rt.errors import TunixRtError
from tunix_rt.runners import docker as runner

pytestmark = pytest.mark.docker

DEBIAN_BASE = "tunix-rt/debian:bookworm"


@pytest.fixture(scope="module")
def client():
    """A client for the daemon the runner uses; skip (or fail in CI) when none answers."""
    if not runner.docker_available():
        message = f"no Docker daemon answers at {runner.docker_host()}"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}; .ci/run must start dockerd (docker/start_dockerd.sh)")
        pytest.skip(f"{message} (start one: eval \"$(docker/start_dockerd.sh)\")")
    import docker

    client = docker.DockerClient(base_url=runner.docker_host())
    yield client
    client.close()


@pytest.fixture(scope="module")
def base_image(client) -> str | None:
    """$TUNIX_RT_BASE_IMAGE (CI: the Debian base), else the Debian base when it exists here."""
    import docker

    if runner.default_base_image():
        return runner.default_base_image()
    try:
        client.images.get(DEBIAN_BASE)
        return DEBIAN_BASE
    except docker.errors.ImageNotFound:
        return None  # the Dockerfile's public default; needs a registry


@pytest.fixture(scope="module")
def kernel_image(client, base_image) -> str:
    """The real kernel image (pinned requirements, papermill, ipykernel), built once for the module."""
    return runner.build_image(base_image=base_image)


def _bundle(folder: Path, *cells: str) -> Path:
    """A hand-made bundle: kernel-metadata.json plus a notebook of the given code cells."""
    folder.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, folder / "tiny.ipynb")
    (folder / "kernel-metadata.json").write_text(json.dumps({"code_file": "tiny.ipynb"}), encoding="utf-8")
    return folder


def _leftovers(client, run_dir: Path) -> list:
    return client.containers.list(all=True, filters={"label": f"{runner.LABEL_RUN_DIR}={run_dir.resolve()}"})


def test_image_builds_from_the_dockerfile(client, kernel_image, base_image) -> None:
    image = client.images.get(kernel_image)
    config = image.attrs["Config"]
    assert config["Entrypoint"] == ["/usr/bin/env"]
    assert config["WorkingDir"] == "/kaggle/working"
    assert config["Labels"][runner.LABEL_ROLE] == "kernel-image"
    versions = client.containers.run(
        kernel_image,
        ["python3", "-c", "import papermill, ipykernel, jax, tunix; print(papermill.__version__)"],
        network_mode="none", remove=True,
    )
    assert versions.decode().strip() == "2.7.0"
    # Unchanged inputs find the same image again instead of rebuilding.
    assert runner.build_image(base_image=base_image, stream=None) == kernel_image


def test_tiny_notebook_writes_into_kaggle_working(client, kernel_image, tmp_path) -> None:
    bundle = _bundle(
        tmp_path / "bundle",
        "import os\nprint('hello from', os.getcwd())",
        "open('hello.txt', 'w').write(os.environ['KAGGLE_KERNEL_RUN_TYPE'])",
    )
    run_dir = tmp_path / "run"
    console = io.StringIO()
    outcome = runner.run_docker(bundle, run_dir, image=kernel_image, stream=console)

    assert outcome.ok, outcome.detail
    assert outcome.backend == "docker"
    assert (run_dir / "outputs" / "hello.txt").read_text() == "Batch"
    assert (run_dir / "outputs" / runner.EXECUTED_NOTEBOOK).is_file()
    log = (run_dir / "raw_log" / "console.log").read_text()
    assert "hello from /kaggle/working" in log
    assert "hello from /kaggle/working" in console.getvalue()  # streamed live too
    # Files the kernel wrote as root belong to the host user.
    assert {p.stat().st_uid for p in (run_dir / "outputs").rglob("*")} == {os.getuid()}
    assert _leftovers(client, run_dir) == []


def test_input_is_read_only_and_failure_removes_the_container(client, kernel_image, tmp_path) -> None:
    bundle = _bundle(tmp_path / "bundle", "open('/kaggle/input/x.txt', 'w').write('no')")
    run_dir = tmp_path / "run"
    outcome = runner.run_docker(bundle, run_dir, image=kernel_image, stream=None)

    assert outcome.exit_code != 0
    assert "Read-only file system" in outcome.log_path.read_text()
    assert _leftovers(client, run_dir) == []


def test_network_none_has_no_interface_but_loopback(client, kernel_image, tmp_path) -> None:
    bundle = _bundle(
        tmp_path / "bundle",
        "import json, os, socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
        "json.dump({'interfaces': sorted(os.listdir('/sys/class/net')), 'reached': reached},"
        " open('net.json', 'w'))",
    )
    run_dir = tmp_path / "run"
    outcome = runner.run_docker(bundle, run_dir, image=kernel_image, stream=None)

    assert outcome.ok, outcome.detail
    net = json.loads((run_dir / "outputs" / "net.json").read_text())
    assert net == {"interfaces": ["lo"], "reached": False}


def test_ctrl_c_stops_and_removes_the_container(client, kernel_image, tmp_path) -> None:
    bundle = _bundle(tmp_path / "bundle", "print('started', flush=True)\nimport time\ntime.sleep(600)")
    run_dir = tmp_path / "run"

    class InterruptOnStart(io.StringIO):
        """The console the user presses Ctrl-C at, once the notebook is running."""

        def write(self, text: str) -> int:
            if "started" in text:
                raise KeyboardInterrupt
            return super().write(text)

    with pytest.raises(KeyboardInterrupt):
        runner.run_docker(bundle, run_dir, image=kernel_image, stream=InterruptOnStart())
    assert _leftovers(client, run_dir) == []


def test_gpu_request_without_gpu_runtime_is_one_clear_error(client, kernel_image, tmp_path) -> None:
    if "nvidia" in client.info().get("Runtimes", {}):
        pytest.skip("this daemon has the NVIDIA runtime: a GPU request would succeed")
    bundle = _bundle(tmp_path / "bundle", "print('never runs')")
    run_dir = tmp_path / "run"
    with pytest.raises(TunixRtError, match="--gpus needs an NVIDIA GPU"):
        runner.run_docker(bundle, run_dir, image=kernel_image, gpus="all", stream=None)
    assert _leftovers(client, run_dir) == []  # the daemon creates it before failing; we remove it


def test_missing_image_is_one_clear_error(client, tmp_path) -> None:
    bundle = _bundle(tmp_path / "bundle", "print('never runs')")
    with pytest.raises(TunixRtError, match="docker image tunix-rt/kernel:does-not-exist not found"):
        runner.run_docker(bundle, tmp_path / "run", image="tunix-rt/kernel:does-not-exist", stream=None)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunix_rt", *args], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_rehearse_docker_smoke_end_to_end(client, kernel_image, base_image, tmp_path) -> None:
    missing = [m for m in ("tunix_rt.commands.rehearse", "tunix_rt.commands.validate", "tunix_rt.bundle")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not built yet: {', '.join(missing)}")
    env = dict(os.environ)
    if base_image:
        env[runner.BASE_IMAGE_ENV] = base_image  # the same image the fixture built: no second build
    run_dir = tmp_path / "m33_rehearsal"
    rehearsed = _cli("rehearse", "--backend", "docker", "--mode", "smoke", "--run-dir", str(run_dir), env=env)
    assert rehearsed.returncode == 0, rehearsed.stderr[-3000:]
    assert "✅ Smoke run completed successfully!" in (run_dir / "raw_log" / "console.log").read_text()

    validated = _cli("validate", str(run_dir), env=env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["environment"]["platform"] == "docker"

    # The run version (the folder's name) is baked into the notebook: bundle a same-named folder elsewhere.
    bundle_only = tmp_path / "bundle_only" / run_dir.name
    bundled = _cli("bundle", "--mode", "smoke", "--run-dir", str(bundle_only), env=env)
    assert bundled.returncode == 0, bundled.stderr[-3000:]
    state = json.loads((bundle_only / "run_state.json").read_text())
    assert manifest["bundle_sha256"] == state["bundle"]["sha256"]
    assert _leftovers(client, run_dir) == []
