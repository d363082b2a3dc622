"""Pre-flight checks before a push spends GPU/TPU quota (``push`` and ``run``; quota and model checks are
skipped for ``cpu``, which spends none).

* **Owner** (every accelerator; it costs no call): the kernel's owner must be the authenticated account,
  else exit 2. Pushing into someone else's namespace fails anyway, and a 403 on their kernel would read as
  "does not exist yet" (kernel_versions.py).
* **Weekly quota** (``GetAcceleratorQuotaStatistics``, the client's ``quota_view``, kaggle-cli PR #1029;
  fields per kagglesdk ``ApiAcceleratorQuota``: ``time_used``, ``time_reserved`` "reserved by
  currently-running sessions", ``total_time_allowed``; weekly refresh ``quota_refresh_time``). What is left
  = allowed − used − reserved. When that is less than the session may run (``--session-timeout``, default
  Kaggle's 9 h), the push is refused with exit 2 unless ``--ignore-quota``: a session that hits the end of
  the quota is stopped and the run is lost (defensive guess: Kaggle documents the weekly quota, not what
  happens at zero). The message prints used/left/refresh and a ``--session-timeout`` that fits.
* **Model sources** (``GetModelInstance``, the client's ``model_instance_get``): each configured
  ``owner/model/framework/instance/version`` must exist and be readable; a 403/404 (Kaggle answers 403 for
  what the caller may not see, kaggle-api #548) → exit 2 with a one-line hint to accept the model's licence
  (Gemma is gated) on its Kaggle page.

A lookup that fails for another reason (network after retries, an endpoint that is not there) warns in one
line and the push goes on: SaveKernel's own ``invalid*Sources`` answer stays the authority.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from . import retry
from .errors import EXIT_API, EXIT_AUTH, EXIT_USAGE, TunixRtError
from .kaggle_client import KaggleClient
from .kernel_id import owner_of, slug_of


@dataclass(frozen=True)
class QuotaLine:
    """One accelerator's weekly quota, in seconds."""

    kind: str  # "GPU" | "TPU"
    used_s: float
    reserved_s: float
    allowed_s: float

    @property
    def left_s(self) -> float:
        return max(0.0, self.allowed_s - self.used_s - self.reserved_s)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "left_s": self.left_s}


@dataclass(frozen=True)
class Quota:
    refresh: datetime | None
    gpu: QuotaLine | None
    tpu: QuotaLine | None

    def for_kind(self, kind: str) -> QuotaLine | None:
        return self.tpu if kind == "tpu" else self.gpu if kind == "gpu" else None

    @property
    def refresh_text(self) -> str:
        if self.refresh is None:
            return "unknown"
        when = self.refresh if self.refresh.tzinfo else self.refresh.replace(tzinfo=UTC)  # the SDK's UTC
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def as_dict(self) -> dict[str, Any]:
        return {"refresh": self.refresh_text if self.refresh else None,
                "gpu": self.gpu.as_dict() if self.gpu else None, "tpu": self.tpu.as_dict() if self.tpu else None}


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value or 0)


def parse_quota(answer: Any) -> Quota:
    """An ``ApiGetAcceleratorQuotaStatisticsResponse`` as plain figures."""

    def line(kind: str, q: Any) -> QuotaLine | None:
        if q is None:
            return None
        return QuotaLine(kind, _seconds(q.time_used), _seconds(q.time_reserved), _seconds(q.total_time_allowed))

    return Quota(answer.quota_refresh_time, line("GPU", answer.gpu_quota), line("TPU", answer.tpu_quota))


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def read_quota(client: KaggleClient) -> Quota:
    """The quota: the credential check's answer when it was this call, else one GetAcceleratorQuotaStatistics."""
    if client.quota_answer is None:
        if client.quota_problem:  # the credential check's quota call failed already: not twice
            raise TunixRtError(client.quota_problem, EXIT_API)
        client.quota_answer = client.quota()
    return parse_quota(client.quota_answer)


def check_owner(kernel_id: str, client: KaggleClient) -> None:
    """Exit 2 when the kernel's owner is not the authenticated account (no API call)."""
    user = client.username
    owner = owner_of(kernel_id)
    if user and owner.lower() != user.lower():
        raise TunixRtError(f"--kernel-id {kernel_id}: the owner {owner!r} is not the account the credentials "
                           f"from {client.credentials.source} sign in as ({user!r}); use "
                           f"{user}/{slug_of(kernel_id)}", EXIT_USAGE)


def _lookup_failed(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TunixRtError) else retry.describe(exc)


def check_quota(client: KaggleClient, kind: str, session_s: int, *, ignore: bool,
                warn: Callable[[str], None]) -> Quota | None:
    """Refuse (exit 2) a GPU/TPU push whose session timeout does not fit in what is left of the quota."""
    try:
        quota = read_quota(client)
    except (TunixRtError, requests.HTTPError, requests.RequestException, ValueError) as exc:
        if isinstance(exc, TunixRtError) and exc.exit_code == EXIT_AUTH:
            raise
        if not client.quota_problem:  # the credential check already warned about the same call
            warn(f"could not read the {kind.upper()} quota ({_lookup_failed(exc)}); pushing without checking it")
        return None
    line = quota.for_kind(kind)
    if line is None:
        warn(f"Kaggle's quota answer has no {kind.upper()} figures; pushing without checking them")
        return quota
    if line.left_s >= session_s:
        return quota
    reserved = f", {hours(line.reserved_s)} reserved by running sessions" if line.reserved_s else ""
    message = (f"{line.kind} quota: {hours(line.used_s)} used of {hours(line.allowed_s)}{reserved}, "
               f"{hours(line.left_s)} left (refreshes {quota.refresh_text}); this session may run "
               f"{hours(session_s)} (--session-timeout {session_s}) and Kaggle stops a session when the quota "
               "runs out")
    if ignore:
        warn(message + "; going on (--ignore-quota)")
        return quota
    fit = int(math.floor(line.left_s / 60.0)) * 60 - 60  # whole minutes, one spare for queueing
    advice = (f"use --session-timeout {fit} ({hours(fit)}) or fewer" if fit >= 600
              else "wait for the refresh")
    raise TunixRtError(f"{message}: {advice}, or pass --ignore-quota", EXIT_USAGE)


def check_model_sources(client: KaggleClient, sources: list[str], warn: Callable[[str], None]) -> None:
    """Exit 2 when a configured model source does not exist or this account cannot read it."""
    for source in sources:
        parts = str(source).split("/")
        if len(parts) != 5:
            continue  # the bundle builder and the client validate the shape; nothing to look up
        owner, model, framework, instance, version = parts
        try:
            found = client.model_instance(f"{owner}/{model}/{framework}/{instance}")
        except requests.HTTPError as exc:
            status = retry.http_status(exc)
            if status in (403, 404):
                raise TunixRtError(
                    f"model source {source}: Kaggle answers HTTP {status}: it does not exist or this account "
                    f"cannot read it; accept the model's licence (Gemma is gated) on "
                    f"https://www.kaggle.com/models/{owner}/{model} first, or fix model.kaggle_model_source",
                    EXIT_USAGE) from exc
            warn(f"could not look up model source {source} ({retry.describe(exc)}); pushing anyway")
            continue
        except (TunixRtError, requests.RequestException, KeyError, ValueError) as exc:
            if isinstance(exc, TunixRtError) and exc.exit_code == EXIT_AUTH:
                raise
            warn(f"could not look up model source {source} ({_lookup_failed(exc)}); pushing anyway")
            continue
        latest = int(getattr(found, "version_number", 0) or 0)
        if version.isdigit() and latest and int(version) > latest:
            raise TunixRtError(f"model source {source}: version {version} does not exist (the latest is "
                               f"{latest}); fix model.kaggle_model_source", EXIT_USAGE)
