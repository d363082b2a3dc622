"""The one kernel-id rule: a slug Kaggle would derive differently is refused with the one to use."""

from __future__ import annotations

import pytest
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.kernel_id import canonical_slug, check


@pytest.mark.parametrize("kernel_id", ["alice/tunix-rt-gemma3", " alice/tiny-kernel ", "Alice_1/abc12"])
def test_canonical_ids_pass(kernel_id: str) -> None:
    assert check(kernel_id) == kernel_id.strip()


@pytest.mark.parametrize(("kernel_id", "suggestion"), [
    ("alice/My_Kernel", "alice/my-kernel"),
    ("alice/Tunix RT Gemma", None),  # whitespace: not OWNER/SLUG at all
    ("alice/tunix--rt", "alice/tunix-rt"),
    ("alice/tunix-rt-", "alice/tunix-rt"),
    ("alice/Gemma3Run", "alice/gemma3run"),
])
def test_a_slug_kaggle_would_derive_differently_is_refused_with_the_canonical_one(kernel_id: str,
                                                                                  suggestion: str | None) -> None:
    with pytest.raises(TunixRtError) as info:
        check(kernel_id)
    assert info.value.exit_code == EXIT_USAGE and "\n" not in info.value.message
    if suggestion:
        assert info.value.message.endswith(f"use {suggestion}")
        assert canonical_slug(kernel_id.split("/")[1]) == suggestion.split("/")[1]


@pytest.mark.parametrize("kernel_id", ["alice", "alice/", "/slug-name", "a/b/c", "alice/abc", "alice/" + "x" * 51,
                                       "al ice/tiny-kernel", "-alice/tiny-kernel"])
def test_malformed_ids_are_usage_errors(kernel_id: str) -> None:
    with pytest.raises(TunixRtError) as info:
        check(kernel_id)
    assert info.value.exit_code == EXIT_USAGE


def test_bundle_uses_the_same_rule(tmp_path, capsys) -> None:
    assert main(["bundle", "--run-dir", str(tmp_path / "r"), "--kernel-id", "alice/My_Kernel"]) == EXIT_USAGE
    assert "use alice/my-kernel" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
