"""The one kernel-id rule (``--kernel-id OWNER/SLUG``), used by ``bundle``, ``push`` (``--bundle`` included)
and ``run``, checked before any file is written or any API call is made.

Why the slug must already be canonical: Kaggle derives a new kernel's slug from its title — "A kernel slug
is always the title lowercased with dashes (-) replacing spaces" (kaggle-cli ``docs/kernels_metadata.md``),
and the 2.2.5 client only *warns* when ``slugify(title)`` differs from the id ("Your kernel title does not
resolve to the specified id. This may result in surprising behavior", ``kernels_push``; kaggle-cli #847).
An id like ``alice/My_Kernel`` would silently create a kernel under another slug, and the next push would
look for the wrong one. So a slug that ``slugify`` would change is refused with one line naming the slug
to use. ``slugify`` is python-slugify, the very function the kaggle client checks titles with.

Titles: a new kernel gets its slug as title (so Kaggle derives the same slug); an existing kernel keeps
its current title, because a different title renames it ("If you wish to rename your kernel, you may change
the title within the metadata", the same doc) — push.py reads it with GetKernel.
"""

from __future__ import annotations

import re

from .errors import EXIT_USAGE, TunixRtError

MIN_SLUG = 5  # the title is the slug for a new kernel, and the client wants titles of >= 5 characters
MAX_SLUG = 50  # Kaggle's URL slugs; longer titles are cut (defensive: not documented)
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXAMPLE = "alice/tunix-rt-gemma3"


def canonical_slug(text: str) -> str:
    """The slug Kaggle derives from a title: python-slugify (lowercase, dashes), as the client checks it."""
    from slugify import slugify

    return slugify(text)


def check(kernel_id: str | None, flag: str = "--kernel-id") -> str:
    """``kernel_id`` stripped, or :class:`TunixRtError` (exit 2) with one line saying what to use."""
    raw = (kernel_id or "").strip()
    owner, sep, slug = raw.partition("/")
    if not sep or not owner or not slug or "/" in slug or any(c.isspace() for c in raw):
        raise TunixRtError(f"{flag} {kernel_id!r}: expected OWNER/SLUG (e.g. {EXAMPLE})", EXIT_USAGE)
    if not _OWNER.match(owner):
        raise TunixRtError(f"{flag} {kernel_id!r}: {owner!r} is not a Kaggle username", EXIT_USAGE)
    canonical = canonical_slug(slug)
    if slug != canonical:
        hint = f"; use {owner}/{canonical}" if len(canonical) >= MIN_SLUG else ""
        raise TunixRtError(
            f"{flag} {kernel_id!r}: {slug!r} is not the slug Kaggle would derive from it (lowercase letters, "
            f"digits and dashes), so pushing would create another kernel{hint}", EXIT_USAGE)
    if not MIN_SLUG <= len(slug) <= MAX_SLUG:
        raise TunixRtError(f"{flag} {kernel_id!r}: the slug needs at least {MIN_SLUG} characters and at most "
                           f"{MAX_SLUG} (e.g. {EXAMPLE})", EXIT_USAGE)
    return raw


def owner_of(kernel_id: str) -> str:
    return kernel_id.partition("/")[0]


def slug_of(kernel_id: str) -> str:
    return kernel_id.partition("/")[2]
