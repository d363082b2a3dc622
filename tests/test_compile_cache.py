"""The rehearsals' JAX compilation cache: a flag's setting, else $TUNIX_RT_JAX_CACHE, else ~/.cache; off."""

from __future__ import annotations

from pathlib import Path

from tunix_rt.runners import compile_cache


def test_default_setting_reads_the_environment_once() -> None:
    assert compile_cache.default_setting({"TUNIX_RT_JAX_CACHE": "/c"}) == "/c"
    assert compile_cache.default_setting({"XDG_CACHE_HOME": "/x"}) == "/x/tunix-rt/jax"
    assert compile_cache.default_setting({"HOME": "/h"}) == "/h/.cache/tunix-rt/jax"


def test_host_dir_per_backend_and_off(tmp_path: Path) -> None:
    assert compile_cache.host_dir("local", str(tmp_path)) == tmp_path / "local"
    assert (tmp_path / "local").is_dir()
    for off in ("off", "0", "OFF", "none"):
        assert compile_cache.host_dir("docker", off) is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert compile_cache.host_dir("local", str(blocked)) is None  # unwritable: no cache, never a failure


def test_kernel_env_caches_every_program() -> None:
    env = compile_cache.kernel_env("/var/cache/x")
    assert env == {"JAX_COMPILATION_CACHE_DIR": "/var/cache/x", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
