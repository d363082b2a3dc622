"""Push a run's bundle to Kaggle exactly once (SaveKernel through the real client).

Before anything is written to the run directory: the kernel id (kernel_id.py: refused with the canonical
slug when it is not one), the credentials (kaggle_client.connect: missing → exit 4, checked once with a
call where a 401/403 can only mean bad credentials) and the pre-flight checks (preflight.py: owner, weekly
quota, model sources). A refused push leaves no ``bundle/`` or ``run_state.json`` behind.

Never twice for one run:

* a run whose state already holds a version is not pushed again (we say so and return it);
* before pushing we find the real latest version (kernel_versions.look_up: GetKernel, then ``v<N+1>``…
  asked for directly, because ``currentVersionNumber`` may lag until a session ends; a 403/404 on a kernel
  never pushed means "does not exist yet", Kaggle answering 403 for kernels it does not show, PR #1201) and
  record it as ``kaggle.push_attempt`` in run_state.json, atomically;
* the push itself is retried only when it certainly never reached Kaggle (connection refused / not
  opened, or a 429); after an ambiguous failure (5xx, read timeout, a connection dropped after sending)
  we ask for ``v<previous+1>`` itself (kernel_versions.landed, a few spaced looks: a new version may not be
  visible at once) and adopt it if it is there; only when it is not do we push again. A crash mid-push
  leaves ``push_attempt``, so the next ``push`` does the same check first.

The title: a new kernel gets its slug (Kaggle derives the slug from the title); an existing kernel keeps
its title (a different one would rename it, kaggle-cli docs/kernels_metadata.md).

Exit codes: a non-empty ``error`` in the SaveKernel answer (Kaggle refused: quota, concurrency, "Notebook
not found", an unknown machine shape) → 5 (EXIT_API, as for any server-side failure); any
``invalid*Sources`` → 2 (EXIT_USAGE: the config names a dataset/model Kaggle does not know; the version it
created runs without it, so it is recorded and the run directory is spent).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from . import accelerators, kernel_versions, preflight, retry, runstate
from . import kernel_id as kernel_id_rule
from .errors import EXIT_API, EXIT_USAGE, TunixRtError
from .fsutil import sha256_file, write_json_atomic
from .kaggle_client import KaggleClient, platform_for
from .progress import Reporter

# Kaggle's own session limits when none is sent: 9 h on GPU/TPU, 12 h on CPU.
DEFAULT_SESSION_S = {"gpu": 9 * 3600, "tpu": 9 * 3600, "cpu": 12 * 3600}
PUSH_ATTEMPTS = 3  # pushes after ambiguous failures, each preceded by a "did it land?" check
METADATA = "kernel-metadata.json"


@dataclass(frozen=True)
class PushOptions:
    """The push flags (cli.py ``_add_push_options``)."""

    kernel_id: str
    accelerator: str
    mode: str = "smoke"
    config: str | None = None
    dataset: str | None = None
    eval_set: str | None = None
    bundle: str | None = None
    session_timeout: int | None = None
    public: bool = False
    no_internet: bool = False
    ignore_quota: bool = False


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_kernel_id(kernel_id: str) -> str:
    """The one kernel-id rule (kernel_id.py)."""
    return kernel_id_rule.check(kernel_id)


def resolve_accelerator(name: str, reporter: Reporter) -> accelerators.Accelerator:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accel = accelerators.resolve(name)
    for w in caught:
        reporter.warn(str(w.message))
    return accel


def _prepare_bundle(run_dir: Path, opts: PushOptions, accel: accelerators.Accelerator) -> Path:
    """The folder to push: ``<run-dir>/bundle``, built by tunix_rt.bundle or copied from ``--bundle``."""
    dest = run_dir / runstate.BUNDLE_DIR
    if opts.bundle:
        src = Path(opts.bundle).resolve()
        if not (src / METADATA).is_file():
            raise TunixRtError(f"--bundle {opts.bundle}: no {METADATA} in that folder")
        if src != dest.resolve():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest, symlinks=False)
        return dest
    from .bundle import build_bundle  # the bundle builder (tunix_rt.bundle); imported only when needed

    # model_sources come from the config's model.kaggle_model_source (the bundle builder checks it).
    build_bundle(run_dir, mode=opts.mode, config=opts.config, dataset=opts.dataset, eval_set=opts.eval_set,
                 kernel_id=opts.kernel_id, accelerator=opts.accelerator, is_private=not opts.public,
                 enable_internet=not opts.no_internet)
    return dest


def apply_metadata(bundle: Path, opts: PushOptions, accel: accelerators.Accelerator,
                   title: str | None = None) -> dict[str, Any]:
    """Set kernel-metadata.json from the flags (atomically) and return it. ``title``: the existing kernel's
    title (kept, so the push does not rename it); None for a new kernel, whose title is its slug."""
    path = bundle / METADATA
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunixRtError(f"{path}: unreadable kernel metadata ({type(exc).__name__})") from exc
    if not isinstance(meta, dict) or not meta.get("code_file"):
        raise TunixRtError(f"{path}: kernel metadata needs a code_file")
    if not (bundle / meta["code_file"]).is_file():
        raise TunixRtError(f"{path}: code_file {meta['code_file']!r} is not in the bundle")
    slug = opts.kernel_id.split("/", 1)[1]
    meta["id"] = opts.kernel_id
    meta.pop("id_no", None)
    # A new kernel: the slug itself, so the slug Kaggle derives from the title is ours (the client warns when
    # slugify(title) != slug and wants >= 5 characters). An existing one keeps its title (no rename).
    meta["title"] = title or slug
    for key in ("machine_shape", "docker_image", "docker_image_pinning_type"):
        meta.pop(key, None)
    meta.update(accel.metadata_fields())  # TPU: no docker image pin at all (kaggle-cli #1197)
    meta["is_private"] = not opts.public
    meta["enable_internet"] = not opts.no_internet
    meta["model_sources"] = list(meta.get("model_sources") or [])
    meta.setdefault("language", "python")
    meta.setdefault("kernel_type", "notebook")
    write_json_atomic(path, meta)
    if accel.enable_tpu:
        _strip_notebook_pins(bundle / meta["code_file"])
    return meta


def _strip_notebook_pins(notebook: Path) -> None:
    """A pinned image in the notebook's own metadata also overrides the TPU VM (#1197): drop it."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    kaggle_meta = nb.get("metadata", {}).get("kaggle") if isinstance(nb, dict) else None
    if isinstance(kaggle_meta, dict) and {"dockerImageVersionId", "accelerator"} & kaggle_meta.keys():
        kaggle_meta.pop("dockerImageVersionId", None)
        kaggle_meta.pop("accelerator", None)
        write_json_atomic(notebook, nb)


def _record_bundle(run_dir: Path, bundle: Path, meta: dict[str, Any]) -> None:
    """The bundle as pushed (after the metadata edits) in run_state.bundle."""
    from .bundle import load_bundle

    try:
        record = load_bundle(bundle).state_record()
    except TunixRtError:  # a hand-made bundle (--bundle): no tunix-rt parameters to describe
        record = {}
    notebook = bundle / meta["code_file"]
    record.update({"sha256": sha256_file(notebook), "metadata_sha256": sha256_file(bundle / METADATA),
                   "size_bytes": notebook.stat().st_size})
    runstate.update(run_dir, bundle=record)


def _kernel_url(kernel_ref: str) -> str:
    import os

    if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST":
        return f"http://localhost/code/{kernel_ref}"
    return f"https://www.kaggle.com/code/{kernel_ref}"


def _invalid_sources(resp: Any) -> list[str]:
    bad = []
    for attr, label in (("invalid_dataset_sources", "dataset"),
                        ("invalid_competition_sources", "competition"),
                        ("invalid_kernel_sources", "kernel"), ("invalid_model_sources", "model")):
        for item in getattr(resp, attr, None) or []:
            bad.append(f"{label} {item}")
    return bad


def _check_bundle_folder(opts: PushOptions) -> None:
    """``--bundle DIR`` must hold kernel-metadata.json (read only: nothing is written yet)."""
    if opts.bundle and not (Path(opts.bundle) / METADATA).is_file():
        raise TunixRtError(f"--bundle {opts.bundle}: no {METADATA} in that folder")


class _NewPaths:
    """What this push creates in the run directory before its last pre-flight check (the model sources,
    which needs the built bundle): removed again when that check refuses, so nothing is left behind."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.had_dir = run_dir.exists()
        self.had_bundle = (run_dir / runstate.BUNDLE_DIR).exists()
        self.had_state = runstate.state_path(run_dir).exists()

    def remove(self) -> None:
        if not self.had_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        if not self.had_bundle:
            shutil.rmtree(self.run_dir / runstate.BUNDLE_DIR, ignore_errors=True)
        if not self.had_state:
            runstate.state_path(self.run_dir).unlink(missing_ok=True)


def push(run_dir: Path, opts: PushOptions, client_factory: Any, reporter: Reporter) -> dict[str, Any]:
    """Push the run's bundle once; returns the run state's ``kaggle`` block. See the module docstring."""
    run_dir = Path(run_dir)
    kernel_id = check_kernel_id(opts.kernel_id)  # before any call and any file
    opts = PushOptions(**{**opts.__dict__, "kernel_id": kernel_id})
    accel = resolve_accelerator(opts.accelerator, reporter)
    state = runstate.load(run_dir)  # reads only; an absent file stays absent
    kaggle = state.get("kaggle") or {}
    if kaggle.get("version_number"):
        if kaggle.get("kernel_ref") and kaggle["kernel_ref"] != kernel_id:
            raise TunixRtError(f"{run_dir}: this run already pushed {kaggle['kernel_ref']}; "
                               "use a new --run-dir for another kernel")
        if kaggle.get("push_error"):
            raise TunixRtError(kaggle["push_error"], EXIT_USAGE)
        reporter.event("push_skipped", f"already pushed {kaggle['kernel_ref']} v{kaggle['version_number']}; "
                       "not pushing again (one push per run)", kernel_ref=kaggle["kernel_ref"],
                       version_number=kaggle["version_number"])
        return kaggle
    _check_bundle_folder(opts)
    session_s = opts.session_timeout or DEFAULT_SESSION_S[accel.kind]

    client: KaggleClient = client_factory()  # credentials: missing/rejected → exit 4, nothing written
    reporter.add_secrets(client.credentials.secrets)
    preflight.check_owner(kernel_id, client)
    if accel.kind != "cpu":
        preflight.check_quota(client, accel.kind, session_s, ignore=opts.ignore_quota, warn=reporter.warn)
    pending = kaggle.get("push_attempt")
    if pending and pending.get("kernel_ref") == kernel_id:
        landed = kernel_versions.landed(client, kernel_id, int(pending["previous_version"]),
                                        client.policy.sleep, _landing_spacing(client))
        if landed:
            reporter.warn(f"an earlier push of this run reached Kaggle as v{landed}; not pushing again")
            return _record_success(run_dir, opts, accel, session_s, landed, _kernel_url(kernel_id), None,
                                   reporter)
    kernel = kernel_versions.look_up(client, kernel_id)
    previous = kernel.latest

    created = _NewPaths(run_dir)
    try:
        bundle = _prepare_bundle(run_dir, opts, accel)
        meta = apply_metadata(bundle, opts, accel, title=kernel.title if kernel.exists else None)
        if accel.kind != "cpu":
            preflight.check_model_sources(client, list(meta.get("model_sources") or []), reporter.warn)
    except TunixRtError:
        created.remove()
        raise
    _record_bundle(run_dir, bundle, meta)
    state = runstate.load(run_dir)
    state.setdefault("kaggle", {})["push_attempt"] = {
        "kernel_ref": kernel_id, "previous_version": previous, "kernel_existed": kernel.exists,
        "reported_current_version": kernel.reported, "started_at": utc_now()}
    runstate.save(run_dir, state)
    if not kernel.exists:
        where = "a new kernel (Kaggle does not show it yet)"
    elif kernel.reported != previous:
        where = f"Kaggle has v{previous} (currentVersionNumber still says v{kernel.reported})"
    else:
        where = f"Kaggle has v{previous}"
    shape = accel.machine_shape or "CPU"
    reporter.event("push_started", f"pushing {kernel_id} ({accel.name}: {shape}); {where}",
                   kernel_ref=kernel_id, previous_version=previous, machine_shape=accel.machine_shape,
                   kernel_existed=kernel.exists)

    last: BaseException | None = None
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            resp = client.push(bundle, timeout_s=opts.session_timeout, machine_shape=accel.machine_shape)
        except TunixRtError:
            raise  # auth, or "never reached Kaggle" retries spent: push_attempt stays for the next run
        except ValueError as exc:  # the client's own checks of the metadata, before anything is sent
            _clear_attempt(run_dir)
            raise TunixRtError(f"{bundle / METADATA}: the kaggle client refused it: {exc}",
                               EXIT_USAGE) from exc
        except requests.HTTPError as exc:
            if not retry.is_transient(exc):
                _clear_attempt(run_dir)
                runstate.mark_stage(run_dir, "push", "failed", error=retry.describe(exc))
                raise TunixRtError(f"Kaggle refused the push of {kernel_id}: {retry.describe(exc)}",
                                   EXIT_API) from exc
            last = exc
        except (requests.RequestException, OSError) as exc:
            last = exc
        else:
            return _handle_response(run_dir, opts, accel, session_s, resp, reporter)
        reporter.warn(f"push outcome unknown ({retry.describe(last)}); asking Kaggle for v{previous + 1} itself")
        landed = kernel_versions.landed(client, kernel_id, previous, client.policy.sleep,
                                        _landing_spacing(client))
        if landed:
            reporter.warn(f"the push reached Kaggle as v{landed}; not pushing again")
            return _record_success(run_dir, opts, accel, session_s, landed, _kernel_url(kernel_id), None,
                                   reporter)
        if attempt < PUSH_ATTEMPTS:
            client.policy.sleep(min(client.policy.max_wait_s, client.policy.base_s * 2 ** attempt))
    runstate.mark_stage(run_dir, "push", "failed", error=retry.describe(last) if last else "")
    raise TunixRtError(f"push of {kernel_id} failed {PUSH_ATTEMPTS} times ({retry.describe(last)}); "
                       f"Kaggle shows no v{previous + 1}, so it is safe to run push again", EXIT_API)


def _landing_spacing(client: KaggleClient) -> float:
    """How far apart the "is v<N+1> there?" looks are: 5 s, then 10 s with the default policy."""
    return 5.0 * client.policy.base_s


def _clear_attempt(run_dir: Path) -> None:
    state = runstate.load(run_dir)
    (state.get("kaggle") or {}).pop("push_attempt", None)
    runstate.save(run_dir, state)


def _handle_response(run_dir: Path, opts: PushOptions, accel: accelerators.Accelerator, session_s: int,
                     resp: Any, reporter: Reporter) -> dict[str, Any]:
    error = (getattr(resp, "error", "") or "").strip()
    version = int(getattr(resp, "version_number", 0) or 0)
    if error:
        _clear_attempt(run_dir)
        runstate.mark_stage(run_dir, "push", "failed", error=error)
        raise TunixRtError(f"Kaggle refused the push of {opts.kernel_id}: {error}", EXIT_API)
    bad = _invalid_sources(resp)
    if bad:
        message = (f"Kaggle does not know the {', '.join(bad)} named by the kernel metadata"
                   + (f"; version v{version} was created and runs without them" if version else "")
                   + "; fix the config, then push with a new --run-dir")
        state = runstate.load(run_dir)
        kaggle = state.setdefault("kaggle", {})
        kaggle.pop("push_attempt", None)
        kaggle.update({"kernel_ref": opts.kernel_id, "push_error": message, "invalid_sources": bad,
                       "url": getattr(resp, "url", None) or None,
                       **({"version_number": version} if version else {})})
        runstate.save(run_dir, state)
        runstate.mark_stage(run_dir, "push", "failed", error=message)
        raise TunixRtError(message, EXIT_USAGE)
    if not version:
        _clear_attempt(run_dir)
        raise TunixRtError(f"push of {opts.kernel_id}: Kaggle answered without a version number", EXIT_API)
    for tag in getattr(resp, "invalid_tags", None) or []:
        reporter.warn(f"Kaggle ignored the unknown keyword {tag!r}")
    url = getattr(resp, "url", None) or _kernel_url(opts.kernel_id)
    return _record_success(run_dir, opts, accel, session_s, version, url, getattr(resp, "kernel_id", None),
                           reporter)


def _record_success(run_dir: Path, opts: PushOptions, accel: accelerators.Accelerator, session_s: int,
                    version: int, url: str, kaggle_kernel_id: Any, reporter: Reporter) -> dict[str, Any]:
    state = runstate.load(run_dir)
    kaggle = state.setdefault("kaggle", {})
    kaggle.pop("push_attempt", None)
    kaggle.update({
        "kernel_ref": opts.kernel_id, "url": url, "version_number": version,
        "machine_shape": accel.machine_shape, "accelerator": accel.name, "pushed_at": utc_now(),
        "pushed_at_epoch": round(time.time(), 3), "session_timeout_s": session_s,
        "status": "PUSHED", **({"kaggle_kernel_id": int(kaggle_kernel_id)} if kaggle_kernel_id else {}),
    })
    state.update({"platform": platform_for(url), "accelerator": accel.name, "mode": opts.mode})
    state.setdefault("command", " ".join(["tunix-rt", *sys.argv[1:]]))
    state.setdefault("stages", {})["push"] = {"status": "done", "version_number": version}
    runstate.save(run_dir, state)
    reporter.event("pushed", f"pushed {opts.kernel_id} v{version} → {url}", kernel_ref=opts.kernel_id,
                   version_number=version, url=url, machine_shape=accel.machine_shape)
    return kaggle
