"""The emulator as one object: start it, point the real kaggle client at it, inspect what it was asked.

emu = Emulator(tmp_path / "kaggle", faults=FaultConfig(rate_429=0.2, seed=1)).start()
env = {**os.environ, **emu.client_env(user="alice")}   # recipe A: KAGGLE_API_ENVIRONMENT + HTTP_PROXY
subprocess.run(["kaggle", "kernels", "push", "-p", folder], env=env)
assert len(emu.calls("SaveKernel")) == 1
emu.stop()
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tunix_rt.emulator import kaggle_log
from tunix_rt.emulator.accounts import AccountService
from tunix_rt.emulator.auth import AuthConfig
from tunix_rt.emulator.behaviour import KaggleBehaviour, QuotaConfig
from tunix_rt.emulator.executor import ExecuteFn, Job, Result, execute
from tunix_rt.emulator.faults import FaultConfig, FaultInjector
from tunix_rt.emulator.rpc import DEFAULT_MODEL_SOURCES, KernelsService, Sources
from tunix_rt.emulator.server import EmulatorServer, RecordedRequest
from tunix_rt.emulator.store import Store, Version
from tunix_rt.kernel_status import TERMINAL, KernelStatus


class Emulator:
    """A local Kaggle kernels API on ``http://host:port`` that runs what is pushed to it."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        auth: AuthConfig | None = None,
        known_model_sources: Mapping[str, Path | None] | list[str] | None = None,
        known_dataset_sources: Mapping[str, Path | None] | list[str] | None = None,
        queue_seconds: float = 0.5,
        session_timeout_s: float | None = None,
        execute_fn: ExecuteFn | None = None,
        log_to: TextIO | None = None,
        behaviour: KaggleBehaviour | None = None,
        quota: QuotaConfig | None = None,
        serve_quota: bool = True,
        gated_models: list[str] | None = None,
    ) -> None:
        """``known_*_sources``: the sources a push may attach (a list, or a mapping to a local folder that
        is linked under the kernel's ``input/``); others are answered in ``invalid*Sources``.
        ``session_timeout_s``: the limit for versions pushed without one. ``execute_fn`` replaces real
        execution (tests); ``log_to`` gets one line per request. ``behaviour``: Kaggle's ways
        (behaviour.py; default: as Kaggle). ``quota``: the weekly quota GetAcceleratorQuotaStatistics answers;
        ``serve_quota=False`` leaves that endpoint out (an unsupported endpoint). ``gated_models``:
        ``owner/model`` handles whose licence the caller has not accepted (GetModelInstance answers 403)."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._requested_port = port
        self.port = 0
        self.store = Store(self.data_dir)
        self.faults = FaultInjector(faults or FaultConfig())
        self.auth = auth or AuthConfig()
        self.queue_seconds = queue_seconds
        self.session_timeout_s = session_timeout_s
        self._execute = execute_fn or execute
        self._log_to = log_to
        sources = Sources(
            models=_as_sources(known_model_sources, DEFAULT_MODEL_SOURCES),
            datasets=_as_sources(known_dataset_sources, {}),
        )
        self.behaviour = behaviour or KaggleBehaviour()
        self.quota = quota or QuotaConfig()
        self.serve_quota = serve_quota
        self.gated_models = frozenset(gated_models or ())
        self.service = KernelsService(
            self.store, self.faults, sources, lambda: self.auth.tokens, self._launch, lambda: self.behaviour
        )
        self.accounts = AccountService(
            self.store, lambda: sources.models, lambda: self.gated_models,
            lambda: self.quota if self.serve_quota else None, lambda: self.behaviour, time.time(),
        )
        self._count_429 = 0
        self._job_stops: dict[tuple[str, str, int], threading.Event] = {}
        self._cancels: dict[tuple[str, str, int], float | None] = {}
        self._requests: list[RecordedRequest] = []
        self._req_lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # ---- life cycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind (port 0 = a free port) and serve in a background thread."""
        self._server = EmulatorServer((self.host, self._requested_port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kaggle-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; running kernels are killed and end in ERROR."""
        self._stop.set()
        for event in list(self._job_stops.values()):
            event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for worker in list(self._workers):
            worker.join(timeout=15)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> None:
        """A delay that ends early when the emulator stops."""
        self._stop.wait(seconds)

    # ---- pointing a client at it ------------------------------------------------------------------

    def client_env(
        self, user: str = "alice", key: str = "emulator-key", token: str | None = None
    ) -> dict[str, str]:
        """Env vars that send the real kaggle client here (recipe A: LOCALHOST + this server as HTTP proxy).
        With ``token``, ``KAGGLE_API_TOKEN`` replaces username/key (it must be in ``AuthConfig.tokens``)."""
        env = {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "NO_PROXY": "",
            "no_proxy": "",
        }
        if token is not None:
            env["KAGGLE_API_TOKEN"] = token
        else:
            env.update({"KAGGLE_USERNAME": user, "KAGGLE_KEY": key})
        return env

    @contextmanager
    def patch_client(self) -> Iterator[None]:
        """Recipe B, in process: kagglesdk's PROD and LOCAL endpoints point here while the block runs."""
        import kagglesdk.kaggle_env as kaggle_env

        saved = dict(kaggle_env._env_to_endpoint)
        kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.PROD] = self.url
        kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.LOCAL] = self.url
        try:
            yield
        finally:
            kaggle_env._env_to_endpoint.clear()
            kaggle_env._env_to_endpoint.update(saved)

    # ---- faults and push errors ------------------------------------------------------------------

    def set_faults(self, config: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Change faults while running: a whole new config, or some fields of the current one."""
        new = (config or self.faults.config).with_changes(**changes)
        self.faults.reconfigure(new)
        return new

    def script_faults(self, target: str, *kinds: str) -> None:
        """The next requests to ``target`` ("SaveKernel", "GetKernelSessionStatus", "blob", ...) get these
        faults in order ("429", "500", "503", "drop", "drop_after", "hang", or "ok")."""
        self.faults.script(target, *kinds)

    def fail_next_pushes(self, message: str, times: int = 1) -> None:
        """The next SaveKernel calls answer ``200 {"error": message}`` (e.g. a session-count limit)."""
        self.service.fail_next_pushes(message, times)

    def set_behaviour(self, **changes: Any) -> KaggleBehaviour:
        """Change Kaggle's ways while running (behaviour.py field names)."""
        self.behaviour = self.behaviour.with_changes(**changes)
        return self.behaviour

    def handlers(self) -> dict[str, Any]:
        """Every RPC the emulator answers (the quota one only while it is served)."""
        return {**self.service.handlers(), **self.accounts.handlers()}

    def retry_after_header(self) -> int | None:
        """Seconds for a 429's Retry-After, or None for the 429s sent without it (every n-th, #938)."""
        with self._req_lock:
            self._count_429 += 1
            count = self._count_429
        every = self.behaviour.omit_retry_after_every
        if every and count % every == 0:
            return None
        return math.ceil(self.faults.config.retry_after)

    def peak_running(self, owner: str = "alice") -> int:
        """The most batch sessions of one kind ``owner`` had at once (queued, running or being cancelled)."""
        return self.service.peak_running.get(owner, 0)

    # ---- recorded requests -----------------------------------------------------------------------

    def record(self, rec: RecordedRequest) -> None:
        with self._req_lock:
            self._requests.append(rec)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (control requests excluded), oldest first."""
        with self._req_lock:
            return list(self._requests)

    def calls(self, rpc: str) -> list[RecordedRequest]:
        """Requests to one RPC method ("SaveKernel") or target ("blob", "logs_stream")."""
        return [r for r in self.requests if r.rpc == rpc or r.target == rpc]

    def clear_requests(self) -> None:
        with self._req_lock:
            self._requests.clear()

    def log(self, rec: RecordedRequest) -> None:
        if self._log_to is None:
            return
        what = rec.rpc or rec.target
        status = rec.status if rec.status is not None else "dropped"
        fault = f" [fault {rec.fault}]" if rec.fault else ""
        user = f" user={rec.user}" if rec.user else ""
        print(
            f"{time.strftime('%H:%M:%S')} {rec.method} {what} -> {status}{user}{fault}",
            file=self._log_to,
            flush=True,
        )

    # ---- kernels (test hooks) --------------------------------------------------------------------

    def version(self, owner: str, slug: str, number: int | None = None) -> Version | None:
        return self.store.version(owner, slug, number)

    def wait_until(
        self,
        owner: str,
        slug: str,
        number: int | None = None,
        *,
        statuses: frozenset[str] = TERMINAL,
        timeout: float = 120.0,
    ) -> Version:
        """Block until the version has one of ``statuses`` (default: finished); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.store.version(owner, slug, number)
            if v is not None and v.status in statuses:
                return v
            time.sleep(0.05)
        raise TimeoutError(
            f"{owner}/{slug} v{number or 'latest'} did not reach {sorted(statuses)} in {timeout}s"
        )

    def seed_version(
        self,
        owner: str,
        slug: str,
        *,
        status: str = KernelStatus.COMPLETE,
        failure_message: str = "",
        outputs: Mapping[str, bytes] | None = None,
        log_entries: list[dict[str, Any]] | None = None,
        text: str = "print('seeded')\n",
        title: str | None = None,
        private: bool = True,
    ) -> Version:
        """A finished version that was never executed (e.g. the previous run before a push, for stale-status
        tests), with the given output files and log."""
        _, version = self.store.create_version(
            owner,
            slug,
            title=title or slug,
            kernel_type="script",
            language="python",
            text=text,
            request={"slug": f"{owner}/{slug}", "kernelType": "script", "language": "python",
                     "isPrivate": private},
            session_timeout_s=None,
            status=KernelStatus.RUNNING,
        )
        for name, data in (outputs or {}).items():
            path = version.working_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        version.log_path.write_text(kaggle_log.render(log_entries or []), encoding="utf-8")
        now = time.time()
        self.store.update(
            version, status=status, failure_message=failure_message, started_at=now, finished_at=now
        )
        return version

    def add_output(self, owner: str, slug: str, number: int, name: str, data: bytes = b"") -> None:
        """List an extra output file under any name, hostile ones included (``../evil``, ``/abs/path``)."""
        version = self._need(owner, slug, number)
        self.store.add_extra_output(version, name, data)

    def add_output_symlink(self, owner: str, slug: str, number: int, name: str, target: str) -> None:
        """Put a symbolic link in the version's outputs; it is listed under ``name`` and its download is
        the link's target text (the emulator never follows it)."""
        version = self._need(owner, slug, number)
        link = version.working_dir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def cancel(self, owner: str, slug: str, number: int, acknowledge_after_s: float | None = 0.5) -> None:
        """Cancel a version as the web UI does: CANCEL_REQUESTED, the session stopped, then
        CANCEL_ACKNOWLEDGED after ``acknowledge_after_s`` (None: it stays CANCEL_REQUESTED)."""
        version = self._need(owner, slug, number)
        key = (owner, slug, number)
        self._cancels[key] = acknowledge_after_s
        self.store.update(version, status=KernelStatus.CANCEL_REQUESTED)
        stop = self._job_stops.get(key)
        if stop is not None:
            stop.set()

    def _need(self, owner: str, slug: str, number: int) -> Version:
        version = self.store.version(owner, slug, number)
        if version is None:
            raise KeyError(f"no version {number} of {owner}/{slug}")
        return version

    # ---- execution -------------------------------------------------------------------------------

    def _launch(self, version: Version, links: dict[str, Path]) -> None:
        worker = threading.Thread(
            target=self._run_version,
            args=(version, links),
            name=f"kernel-{version.slug}-v{version.number}",
            daemon=True,
        )
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _run_version(self, version: Version, links: dict[str, Path]) -> None:
        key = (version.owner, version.slug, version.number)
        job_stop = self._job_stops.setdefault(key, threading.Event())
        if self._stop.is_set():
            job_stop.set()
        if version.status == KernelStatus.NEW_SCRIPT:
            if job_stop.wait(self.behaviour.new_script_s):
                self._end_stopped(version, key)
                return
            self.store.update(version, status=KernelStatus.QUEUED)
        if job_stop.wait(self.queue_seconds):
            self._end_stopped(version, key)
            return
        job = Job(
            version.kernel_type,
            version.source,
            version.dir,
            timeout_s=version.session_timeout_s or self.session_timeout_s,
        )
        _mount_inputs(job.input_dir, links, copy_under=self.store.kernels_dir)
        self.store.update(version, status=KernelStatus.RUNNING, started_at=time.time())
        try:
            with kaggle_log.KaggleLogWriter(version.log_path) as log:
                result = self._execute(job, log, job_stop)
        except Exception as exc:  # a bug in a replacement executor must still end the session
            result = Result(False, f"The emulator could not run the kernel: {exc}")
        finally:
            _set_writable(job.input_dir, True)  # read-only only while the kernel runs; deletable afterwards
        if key in self._cancels:
            self._end_stopped(version, key)
            return
        self.store.update(
            version,
            status=KernelStatus.COMPLETE if result.ok else KernelStatus.ERROR,
            failure_message="" if result.ok else result.failure_message,
            finished_at=time.time(),
        )

    def _end_stopped(self, version: Version, key: tuple[str, str, int]) -> None:
        """A session stopped by a cancel (CANCEL_REQUESTED → CANCEL_ACKNOWLEDGED) or by the emulator's stop."""
        if key not in self._cancels:
            why = ("The session was stopped before it ran." if version.started_at is None
                   else "The session was stopped (emulator shut down).")
            self.store.update(version, status=KernelStatus.ERROR, failure_message=why, finished_at=time.time())
            return
        ack = self._cancels[key]
        if ack is None:
            return  # stays CANCEL_REQUESTED
        if not self._stop.wait(ack):
            self.store.update(version, status=KernelStatus.CANCEL_ACKNOWLEDGED, finished_at=time.time())


def _mount_inputs(input_dir: Path, links: dict[str, Path], *, copy_under: Path | None = None) -> None:
    """Link hosted sources under input/ and make the folder read-only, as /kaggle/input is. Another kernel's
    output (a target under ``copy_under``) is copied with read-only files instead: through a link the
    kernel could write into that kernel's served outputs, which on Kaggle are a read-only mount."""
    input_dir.mkdir(parents=True, exist_ok=True)
    for rel, target in links.items():
        dest = input_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            continue
        source = Path(target).resolve()
        if copy_under is not None and source.is_dir() and source.is_relative_to(Path(copy_under).resolve()):
            shutil.copytree(source, dest, symlinks=True)
            for path in dest.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        else:
            dest.symlink_to(source, target_is_directory=source.is_dir())
    _set_writable(input_dir, False)


def _set_writable(folder: Path, writable: bool) -> None:
    mode = stat.S_IRWXU if writable else stat.S_IRUSR | stat.S_IXUSR
    mode |= stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for dirpath, _, _ in os.walk(folder):
        os.chmod(dirpath, mode)


def _as_sources(
    value: Mapping[str, Path | None] | list[str] | None, default: Mapping[str, Path | None]
) -> dict[str, Path | None]:
    if value is None:
        return dict(default)
    if isinstance(value, Mapping):
        return {k: (Path(v) if v is not None else None) for k, v in value.items()}
    return dict.fromkeys(value)
