"""The stage engine: one orchestration for every flow (papermill ``engines.py`` style).

A flow is a list of stage objects; the flows are::

    rehearse   bundle → execute (local | docker runner) → evidence → validate
    run        preflight → bundle → push → wait → pull (the kaggle runner) → evidence → validate → package

and the single verbs run slices of them (``push`` = preflight → bundle → push, ``pull`` = pull → evidence).
For each stage :func:`run_flow`

1. asks :meth:`Stage.skip` whether the stage must not run (push: this run already pushed), and, when the
   flow **resumes** (``run``), skips a stage the run state records as done;
2. runs it: :meth:`Stage.run` gets the :class:`Context` (the run state, loaded once by the command, the
   reporter, and the values earlier stages returned) and returns a :class:`StageResult`;
3. records it in the run state (``stages.<name>``: done/failed plus the result's details) and writes the
   state — the one write per stage. A stage that raises is recorded ``failed`` with its one-line reason
   (when the run has a state file already: a refused first stage leaves nothing behind), then the error
   propagates. A result with ``stop`` ends the flow there with that exit code.

Stages with ``record = False`` (pre-flight checks) leave no record and write nothing. The other drivers run
their flows through here too: ``run --sessions`` one flow per session (chain.py), and the sweep each point's
flow in slices, its wait stage fed by the sweep's one poller (sweep.py ``PolledWaitStage`` over
:class:`~tunix_rt.wait.VersionWait`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import EXIT_OK, TunixRtError
from .interrupts import signal_name
from .progress import Reporter
from .runstate import RunState


@dataclass
class StageResult:
    """What a stage did: details for its record, a value for later stages and the command, and whether the
    flow ends here (``stop``: the exit code; ``error``: the one line that says why)."""

    details: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    status: str = "done"  # "failed": the stage ran and recorded a failure (the flow may go on: evidence)
    stop: int | None = None
    error: str | None = None


@dataclass
class Context:
    """What every stage of one command shares: the run state (the single owner of run_state.json), the
    reporter, whether the flow resumes, and the values of the stages that ran."""

    state: RunState
    reporter: Reporter
    resume: bool = False
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.state.run_dir


class Stage(Protocol):
    """One step of a flow."""

    name: str
    record: bool

    def skip(self, ctx: Context) -> str | None:
        """Why this stage must not run now (None: it runs)."""

    def run(self, ctx: Context) -> StageResult:
        """Do the stage's work; raise :class:`TunixRtError` for an expected failure."""


class BaseStage:
    """Defaults: recorded, never skipped on its own account, a done stage shows no detail when skipped."""

    name = ""
    record = True

    def skip(self, ctx: Context) -> str | None:
        return None

    def done_detail(self, ctx: Context) -> str:
        """Shown after "already done" when a resumed flow skips this stage."""
        return ""


@dataclass
class FlowResult:
    """How a flow ended: its exit code (and the reason when not 0), what ran and what was skipped."""

    exit_code: int
    error: str | None
    ran: list[str]
    skipped: list[str]
    values: dict[str, Any]


def run_flow(stages: Sequence[Stage], ctx: Context) -> FlowResult:
    """Run ``stages`` in order (see the module docstring); returns how the flow ended."""
    ran: list[str] = []
    skipped: list[str] = []
    for stage in stages:
        reason = stage.skip(ctx)
        if reason is None and ctx.resume and stage.record and ctx.state.done(stage.name):
            detail = stage.done_detail(ctx) if isinstance(stage, BaseStage) else ""
            reason = f"already done{detail}; skipping"
        if reason is not None:
            skipped.append(stage.name)
            ctx.reporter.event("stage_skipped", f"{stage.name}: {reason}", stage=stage.name)
            continue
        try:
            result = stage.run(ctx)
        except (TunixRtError, KeyboardInterrupt) as exc:
            if stage.record and ctx.state.path.exists():
                if isinstance(exc, TunixRtError):
                    ctx.state.mark(stage.name, "failed", error=exc.message)
                else:  # Ctrl-C, SIGTERM, SIGHUP (interrupts.py): a rerun runs the stage again
                    ctx.state.mark(stage.name, "interrupted", error=f"interrupted ({signal_name(exc)})")
                ctx.state.write()
            raise
        ran.append(stage.name)
        ctx.values[stage.name] = result.value
        if stage.record:
            ctx.state.mark(stage.name, result.status, **result.details)
            ctx.state.write()
        if result.stop is not None:
            return FlowResult(result.stop, result.error, ran, skipped, ctx.values)
    return FlowResult(EXIT_OK, None, ran, skipped, ctx.values)
