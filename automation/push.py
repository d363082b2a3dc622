"""Push a run's bundle to Kaggle exactly once (SaveKernel through the real client).

Before anything is written to the run directory (:func:`plan_push`, the ``preflight`` stage of
runners/kaggle.py): the kernel id (kernel_id.py: refused with the canonical slug when it is not one), the
credentials (kaggle_client.connect: missing → exit 4, checked once with a call where a 401/403 can only mean
bad credentials), the pre-flight checks (preflight.py: owner, weekly quota) and the kernel as Kaggle shows it
now (kernel_versions.look_up: GetKernel, then ``v<N+1>``… asked for directly, because ``currentVersionNumber``
may lag until a session ends; a 403/404 on a kernel never pushed means "does not exist yet", Kaggle answering
403 for kernels it does not show, PR #1201). The ``bundle`` stage then checks the model sources and writes
the bundle once, with the kernel's title. A refused push leaves no ``bundle/`` or ``run_state.json`` behind.

Never twice for one run (:func:`push`):

* a run whose state already holds a version is not pushed again (the push stage skips, saying so);
* before pushing we record the real latest version as ``kaggle.push_attempt`` in run_state.json, atomically;
* the push itself is retried only when it certainly never reached Kaggle (connection refused / not
  opened, or a 429); after an ambiguous failure (5xx, read timeout, a connection dropped after sending)
  we ask for ``v<previous+1>`` itself (kernel_versions.landed) and adopt it if it is there; only when it is
  not do we push again. A crash mid-push (or a kill: SIGKILL, a CI runner gone) leaves ``push_attempt``,
  so the next ``push`` does the same check first.
* **The settle window** (``--push-settle``, default :data:`PUSH_SETTLE_S` = 5 min): a SaveKernel whose
  reply never came can still complete on the server after the client gave up (a slow Kaggle answering
  after the read timeout; a rerun seconds after a kill). So "is ``v<previous+1>`` there?" is asked on until
  the window, counted from when that push was sent (``push_attempt.started_at``), has passed; a rerun
  later than that asks once. Only then is it safe to push again.

The title: a new kernel gets its slug (Kaggle derives the slug from the title); an existing kernel keeps
its title (a different one would rename it, kaggle-cli docs/kernels_metadata.md). bundle.py writes it.

Exit codes: a non-empty ``error`` in the SaveKernel answer (Kaggle refused: quota, concurrency, "Notebook
not found", an unknown machine shape) → 5 (EXIT_API, as for any server-side failure); any
``invalid*Sources`` → 2 (EXIT_USAGE: the config names a dataset/model Kaggle does not know; the version it
created runs without it, so it is recorded and the run directory is spent).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from . import accelerators, kernel_versions, knobs, preflight, retry
from . import kernel_id as kernel_id_rule
from .errors import EXIT_API, EXIT_USAGE, TunixRtError
from .kaggle_client import KaggleClient, platform_for
from .kernel_status import KernelStatus
from .layout import METADATA_NAME
from .progress import Reporter
from .runstate import KaggleRecord, PushAttempt, RunState, utc_epoch, utc_now

# Kaggle's own session limits when none is sent: 9 h on GPU/TPU, 12 h on CPU.
DEFAULT_SESSION_S = {"gpu": 9 * 3600, "tpu": 9 * 3600, "cpu": 12 * 3600}
PUSH_ATTEMPTS = 3  # pushes after ambiguous failures, each preceded by a "did it land?" check
PUSH_SETTLE_S = float(knobs.PUSH_SETTLE.default or 0)  # how long a push whose reply never came may still land


@dataclass(frozen=True)
class PushOptions:
    """The push flags beyond the bundle's (cli.py ``_add_push_options``)."""

    session_timeout: int | None = None
    ignore_quota: bool = False
    settle_s: float = PUSH_SETTLE_S  # --push-settle (see the module docstring)


@dataclass(frozen=True)
class PushPlan:
    """What the checks before a push found (nothing was written): the kernel id, the accelerator, the session
    length and the kernel as Kaggle shows this account now."""

    kernel_id: str
    accel: accelerators.Accelerator
    session_s: int
    kernel: kernel_versions.KernelState

    @property
    def title(self) -> str | None:
        """The existing kernel's title, kept (None for a new kernel: its slug)."""
        return self.kernel.title if self.kernel.exists else None


@dataclass(frozen=True)
class PushResult:
    """The version this run pushed. ``how``: "pushed", "landed" (an ambiguous failure's version, found on
    Kaggle) or "already" (an earlier command of this run pushed it)."""

    kernel_ref: str
    version_number: int
    url: str | None
    how: str = "pushed"


def resolve_accelerator(name: str, reporter: Reporter) -> accelerators.Accelerator:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accel = accelerators.resolve(name)
    for w in caught:
        reporter.warn(str(w.message))
    return accel


def plan_push(kernel_id: str, accelerator: str, opts: PushOptions, client: KaggleClient,
              reporter: Reporter) -> PushPlan:
    """Owner, quota and the kernel's versions, before any file is written (see the module docstring)."""
    kernel_id = kernel_id_rule.check(kernel_id)
    accel = resolve_accelerator(accelerator, reporter)
    session_s = opts.session_timeout or DEFAULT_SESSION_S[accel.kind]
    preflight.check_owner(kernel_id, client)
    if accel.kind != "cpu":
        preflight.check_quota(client, accel.kind, session_s, ignore=opts.ignore_quota, warn=reporter.warn)
    return PushPlan(kernel_id, accel, session_s, kernel_versions.look_up(client, kernel_id))


def check_already_pushed(state: RunState, kernel_id: str) -> KaggleRecord | None:
    """The Kaggle record when this run already pushed ``kernel_id`` (None when it pushed nothing yet);
    exit 2 when it pushed another kernel, or a version Kaggle ran without its sources."""
    kaggle = state.kaggle
    if kaggle is None or not kaggle.pushed:
        return None
    if kaggle.kernel_ref and kaggle.kernel_ref != kernel_id:
        raise TunixRtError(f"{state.run_dir}: this run already pushed {kaggle.kernel_ref}; "
                           "use a new --run-dir for another kernel", EXIT_USAGE)
    if kaggle.push_error:
        raise TunixRtError(kaggle.push_error, EXIT_USAGE)
    return kaggle


def push(state: RunState, plan: PushPlan, bundle_dir: Path, opts: PushOptions, client: KaggleClient,
         reporter: Reporter) -> PushResult:
    """SaveKernel of ``bundle_dir`` once, recording the version in ``state``. See the module docstring."""
    kaggle = state.kaggle_record()
    kernel_id = plan.kernel_id
    earlier = _earlier_push_landed(state, plan, opts, client, reporter)
    if earlier is not None:
        return earlier
    kernel = plan.kernel
    previous = kernel.latest
    kaggle.push_attempt = PushAttempt(kernel_ref=kernel_id, previous_version=previous,
                                      kernel_existed=kernel.exists, reported_current_version=kernel.reported,
                                      started_at=utc_now())
    state.write()  # before SaveKernel: a crash from here on is resolved by asking for v<previous+1>
    if not kernel.exists:
        where = "a new kernel (Kaggle does not show it yet)"
    elif kernel.reported != previous:
        where = f"Kaggle has v{previous} (currentVersionNumber still says v{kernel.reported})"
    else:
        where = f"Kaggle has v{previous}"
    shape = plan.accel.machine_shape or "CPU"
    reporter.event("push_started", f"pushing {kernel_id} ({plan.accel.name}: {shape}); {where}",
                   kernel_ref=kernel_id, previous_version=previous, machine_shape=plan.accel.machine_shape,
                   kernel_existed=kernel.exists)

    last: BaseException | None = None
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        sent = time.time()  # the settle window of this push counts from here
        try:
            resp = client.push(bundle_dir, timeout_s=opts.session_timeout, machine_shape=plan.accel.machine_shape)
        except TunixRtError:
            raise  # auth, or "never reached Kaggle" retries spent: push_attempt stays for the next run
        except ValueError as exc:  # the client's own checks of the metadata, before anything is sent
            kaggle.push_attempt = None
            raise TunixRtError(f"{bundle_dir / METADATA_NAME}: the kaggle client refused it: {exc}",
                               EXIT_USAGE) from exc
        except requests.HTTPError as exc:
            if not retry.is_transient(exc):
                kaggle.push_attempt = None
                raise TunixRtError(f"Kaggle refused the push of {kernel_id}: {retry.describe(exc)}",
                                   EXIT_API) from exc
            last = exc
        except (requests.RequestException, OSError) as exc:
            last = exc
        else:
            return _handle_response(state, plan, resp, reporter)
        reporter.warn(f"push outcome unknown ({retry.describe(last)}); asking Kaggle for v{previous + 1} itself "
                      f"for up to {opts.settle_s:.0f} s (--push-settle)")
        landed = kernel_versions.landed(client, kernel_id, previous, client.policy.sleep, _landing_spacing(client),
                                        until=sent + opts.settle_s)
        if landed:
            reporter.warn(f"the push reached Kaggle as v{landed}; not pushing again")
            return _record_success(state, plan, landed, _kernel_url(kernel_id), None, reporter, how="landed")
        if attempt < PUSH_ATTEMPTS:
            client.policy.sleep(min(client.policy.max_wait_s, client.policy.base_s * 2 ** attempt))
    raise TunixRtError(f"push of {kernel_id} failed {PUSH_ATTEMPTS} times ({retry.describe(last)}); "
                       f"Kaggle shows no v{previous + 1}, so it is safe to run push again", EXIT_API)


def _earlier_push_landed(state: RunState, plan: PushPlan, opts: PushOptions, client: KaggleClient,
                         reporter: Reporter) -> PushResult | None:
    """The result of this run's earlier push of the same kernel whose outcome was never seen, when it reached
    Kaggle (looked for until its settle window ends); None when there was none or it did not land."""
    pending = state.kaggle_record().push_attempt
    kernel_id = plan.kernel_id
    if not pending or pending.kernel_ref != kernel_id:
        return None
    until = (utc_epoch(pending.started_at) or 0.0) + opts.settle_s  # unreadable: settled long ago
    if until > time.time():
        reporter.warn(f"an earlier push of this run may still complete on Kaggle: looking for "
                      f"v{pending.previous_version + 1} for up to {until - time.time():.0f} s (--push-settle)")
    landed = kernel_versions.landed(client, kernel_id, pending.previous_version, client.policy.sleep,
                                    _landing_spacing(client), until=until)
    if not landed:
        return None
    reporter.warn(f"an earlier push of this run reached Kaggle as v{landed}; not pushing again")
    return _record_success(state, plan, landed, _kernel_url(kernel_id), None, reporter, how="landed")


def _landing_spacing(client: KaggleClient) -> float:
    """How far apart the "is v<N+1> there?" looks are: 5 s, then 10 s with the default policy."""
    return 5.0 * client.policy.base_s


def _kernel_url(kernel_ref: str) -> str:
    if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST":  # the client's own switch (recipe A)
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


def _handle_response(state: RunState, plan: PushPlan, resp: Any, reporter: Reporter) -> PushResult:
    kaggle = state.kaggle_record()
    error = (getattr(resp, "error", "") or "").strip()
    version = int(getattr(resp, "version_number", 0) or 0)
    if error:
        kaggle.push_attempt = None
        raise TunixRtError(f"Kaggle refused the push of {plan.kernel_id}: {error}", EXIT_API)
    bad = _invalid_sources(resp)
    if bad:
        message = (f"Kaggle does not know the {', '.join(bad)} named by the kernel metadata"
                   + (f"; version v{version} was created and runs without them" if version else "")
                   + "; fix the config, then push with a new --run-dir")
        kaggle.push_attempt = None
        kaggle.kernel_ref, kaggle.push_error, kaggle.invalid_sources = plan.kernel_id, message, bad
        kaggle.url = getattr(resp, "url", None) or None
        if version:
            kaggle.version_number = version
        raise TunixRtError(message, EXIT_USAGE)
    if not version:
        kaggle.push_attempt = None
        raise TunixRtError(f"push of {plan.kernel_id}: Kaggle answered without a version number", EXIT_API)
    for tag in getattr(resp, "invalid_tags", None) or []:
        reporter.warn(f"Kaggle ignored the unknown keyword {tag!r}")
    url = getattr(resp, "url", None) or _kernel_url(plan.kernel_id)
    return _record_success(state, plan, version, url, getattr(resp, "kernel_id", None), reporter)


def _record_success(state: RunState, plan: PushPlan, version: int, url: str, kaggle_kernel_id: Any,
                    reporter: Reporter, *, how: str = "pushed") -> PushResult:
    kaggle = state.kaggle_record()
    kaggle.push_attempt = None
    kaggle.kernel_ref, kaggle.url, kaggle.version_number = plan.kernel_id, url, version
    kaggle.machine_shape, kaggle.accelerator = plan.accel.machine_shape, plan.accel.name
    kaggle.pushed_at, kaggle.pushed_at_epoch = utc_now(), round(time.time(), 3)
    kaggle.session_timeout_s, kaggle.status = plan.session_s, KernelStatus.PUSHED
    if kaggle_kernel_id:
        kaggle.kaggle_kernel_id = int(kaggle_kernel_id)
    state.platform, state.accelerator = platform_for(url), plan.accel.name
    state.command = state.command or " ".join(["tunix-rt", *sys.argv[1:]])
    reporter.event("pushed", f"pushed {plan.kernel_id} v{version} → {url}", kernel_ref=plan.kernel_id,
                   version_number=version, url=url, machine_shape=plan.accel.machine_shape)
    return PushResult(plan.kernel_id, version, url, how)
