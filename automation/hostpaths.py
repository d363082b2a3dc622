"""Portable evidence: the folders of the machine that ran become portable names in every text tunix-rt keeps.

Evidence, logs and zips are committed and shared, so they must not carry this machine's layout (the
checkout, the home folder, the virtualenv, temporary folders). :class:`HostPaths` rewrites a folder and
everything under it:

* a runner's Kaggle-like folders to **the Kaggle layout** they stand for (the local runner's working
  directory → ``/kaggle/working``, its input folder → ``/kaggle/input``, the kernel's temp folder → ``/tmp``);
* the run directory and the checkout to **relative paths** (``…/m33/raw_log/console.log`` →
  ``raw_log/console.log``; the folder itself → ``.``);
* the kernel's unpacked payload (``<anything>/tunix_rt_payload_<random>/``, the notebook's ``mkdtemp``) to paths
  **relative to the payload root** (``training/run.py`` in a traceback);
* the virtualenv to ``<venv>`` and the home folder to ``~``.

Longer folders win (the run directory inside the checkout is matched first). A folder name is matched only as a
whole path component, so ``/work/repo`` does not rewrite ``/work/repo2``. :meth:`HostPaths.find` names what is
left (``tunix-rt validate`` reports it).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The kernel notebook unpacks its payload into mkdtemp(prefix="tunix_rt_payload_"); mkdtemp adds [a-z0-9_]{8}.
PAYLOAD_ROOT = re.compile(r"(?:/[^\s/\"'<>|:]+)*/tunix_rt_payload_[A-Za-z0-9_]+(/?)")
# tunix-rt's own temporary folders (a prefix, then mkdtemp's 8 random characters): none may outlive a scrub.
TEMP_MARKERS = re.compile(r"tunix[-_]rt[-_](?:payload|kaggle|build)[-_][A-Za-z0-9_-]{8}")
_END = r"(/|(?![\w.@+-]))"  # a whole path component: followed by "/" or by no further name character


@dataclass(frozen=True)
class Rule:
    """Rewrite ``folder`` (and anything under it) to ``replacement``; ``""`` makes paths relative."""

    folder: str
    replacement: str
    label: str  # what the folder is, for messages ("the checkout")


class HostPaths:
    """Rewrites the folders of :class:`Rule` s in text (see the module docstring). Build once, call per text."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        seen: dict[str, Rule] = {}
        for rule in rules:
            for variant in _variants(rule.folder):
                seen.setdefault(variant, Rule(variant, rule.replacement, rule.label))
        self.rules = tuple(sorted(seen.values(), key=lambda r: len(r.folder), reverse=True))
        self._compiled = [(r, re.compile(re.escape(r.folder) + _END)) for r in self.rules]

    def scrub(self, text: str) -> str:
        """``text`` with every known folder rewritten, and the kernel's payload root made relative."""
        for rule, rx in self._compiled:
            if rule.folder in text:  # a substring test first: most text holds none of them
                text = rx.sub(lambda m, r=rule: _replace(r.replacement, m.group(1)), text)
        if "tunix_rt_payload_" in text:
            text = PAYLOAD_ROOT.sub(lambda m: _replace("", m.group(1)), text)
        return text

    def find(self, text: str) -> list[str]:
        """What machine-specific folders ``text`` still names (labels, never the paths themselves)."""
        found = [rule.label for rule, rx in self._compiled if rule.folder in text and rx.search(text)]
        if TEMP_MARKERS.search(text):
            found.append("a tunix-rt temporary folder")
        return list(dict.fromkeys(found))


def _replace(replacement: str, slash: str) -> str:
    if replacement:
        return replacement + slash
    return "" if slash else "."


def _variants(folder: str) -> list[str]:
    """The folder as given and resolved (symlinks: /tmp vs /private/tmp); never "/" alone."""
    out = []
    for value in (str(folder), _resolved(folder)):
        value = value.rstrip("/")
        if value and value not in out:
            out.append(value)
    return out


def _resolved(folder: str) -> str:
    try:
        return str(Path(folder).resolve())
    except OSError:
        return str(folder)


def machine_rules(*, run_dir: Path | None = None, root: Path | None = None) -> list[Rule]:
    """The folders of this machine that evidence must never name: the run directory and the checkout
    (relative), the virtualenv (``<venv>``) and the home folder (``~``)."""
    rules = []
    if run_dir is not None:
        rules.append(Rule(str(Path(run_dir).absolute()), "", "the run directory"))
    if root is not None:
        rules.append(Rule(str(Path(root).absolute()), "", "the checkout"))
    if sys.prefix != sys.base_prefix:  # a virtualenv; a system Python's /usr is no one's private layout
        rules.append(Rule(sys.prefix, "<venv>", "the virtualenv"))
    home = os.path.expanduser("~")
    if home not in ("", "/", "/root"):  # Kaggle runs as root too: /root in a Kaggle log is Kaggle's, not ours
        rules.append(Rule(home, "~", "the home folder"))
    return rules


def for_evidence(run_dir: Path | None = None, root: Path | None = None) -> HostPaths:
    """The scrub every evidence file and zip entry gets (:func:`machine_rules`)."""
    return HostPaths(machine_rules(run_dir=run_dir, root=root))


def for_validation(root: Path | None = None) -> HostPaths:
    """What ``tunix-rt validate`` looks for: this machine's checkout, virtualenv and home, and (through
    :data:`TEMP_MARKERS`) tunix-rt's temporary folders, also below the system temp dir."""
    rules = machine_rules(root=root)
    tmp = tempfile.gettempdir()
    if tmp not in ("/tmp", "/"):  # /tmp itself is the Kaggle layout's temp folder too
        rules.append(Rule(tmp, "/tmp", "the temporary folder"))
    return HostPaths(rules)
