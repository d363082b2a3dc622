"""``tunix-rt quota [--json]``: the weekly GPU and TPU quota (used, allowed, left) and its refresh time."""

from __future__ import annotations

import argparse

from ..errors import EXIT_API, EXIT_AUTH, TunixRtError
from ..kaggle_client import connect
from ..preflight import hours, read_quota
from ..progress import Reporter


def run(args: argparse.Namespace) -> int:
    """One GetAcceleratorQuotaStatistics call (the credential check's, for a legacy key)."""
    reporter = Reporter("quota", json_mode=args.json)

    def body() -> int:
        client = connect(warn=reporter.warn)
        try:
            quota = read_quota(client)
        except TunixRtError as exc:
            if exc.exit_code == EXIT_AUTH:
                raise
            raise TunixRtError(f"could not read the quota: {exc.message}", EXIT_API) from exc
        except Exception as exc:  # an HTTP answer that is not a quota (e.g. the endpoint is not there)
            raise TunixRtError(f"could not read the quota: {exc}".splitlines()[0], EXIT_API) from exc
        lines = []
        for line in (quota.gpu, quota.tpu):
            if line is None:
                continue
            reserved = f", {hours(line.reserved_s)} reserved" if line.reserved_s else ""
            lines.append(f"{line.kind}: {hours(line.used_s)} used of {hours(line.allowed_s)}{reserved}, "
                         f"{hours(line.left_s)} left")
        lines = lines or ["no GPU/TPU figures in Kaggle's answer"]
        reporter.result(0, "\n".join([*lines, f"refreshes {quota.refresh_text}"]), account=client.username,
                        credentials=client.credentials.source, **quota.as_dict())
        return 0

    return reporter.run(body)
