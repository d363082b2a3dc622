"""The Kaggle API emulator, driven by the real ``kaggle`` client (CLI subprocess, KaggleApi in process)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from emulator_fixtures import FakeRun, notebook_json, write_kernel
from tunix_rt.emulator import AuthConfig, FaultConfig, kaggle_log

STATUS_RPC = "/api/v1/kernels.KernelsApiService/GetKernelSessionStatus"
GEMMA = "google/gemma-3/transformers/gemma-3-1b-it/1"


def _basic(user: str = "alice", key: str = "emulator-key") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def _poll_statuses(api, kernel: str, until=("COMPLETE", "ERROR"), limit: float = 120) -> list[str]:
    """Distinct statuses seen in order, polling fast until a terminal one."""
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = api.kernels_status(kernel).status.name
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{kernel} never finished: {seen}")


# ---- push, run, status, outputs (real CLI, recipe A) ---------------------------------------------


def test_cli_push_runs_notebook_and_output_pulls_subfolders_and_log(make_emulator, kaggle_cli, kaggle_api,
                                                                    tmp_path):
    emu = make_emulator(queue_seconds=1.5)
    release = tmp_path / "release"
    source = notebook_json(
        "import os, sys, time\n"
        "print('hello from', os.environ.get('KAGGLE_KERNEL_RUN_TYPE'))\n"
        "print('careful', file=sys.stderr)\n",
        "os.makedirs('output/deep', exist_ok=True)\n"
        "open('output/deep/a.txt', 'w').write('A')\n"
        "open('top.txt', 'w').write('T')\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n",
    )
    folder = write_kernel(tmp_path / "kern", "alice/tiny-kernel", source, model_sources=[GEMMA],
                          machine_shape="NvidiaTeslaT4", enable_gpu=True)
    with emu.patch_client():
        push = kaggle_cli("kernels", "push", "-p", str(folder), emulator=emu)
        assert push.returncode == 0, push.stderr
        assert "Kernel version 1 successfully pushed" in push.stdout
        seen = [kaggle_api.kernels_status("alice/tiny-kernel/1").status.name]
        emu.wait_until("alice", "tiny-kernel", 1, statuses=frozenset({"RUNNING"}))
        seen.append(kaggle_api.kernels_status("alice/tiny-kernel/1").status.name)
        release.touch()
        seen += _poll_statuses(kaggle_api, "alice/tiny-kernel/1")
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == ["QUEUED", "RUNNING", "COMPLETE"]

    status = kaggle_cli("kernels", "status", "alice/tiny-kernel", emulator=emu)
    assert 'has status "KernelWorkerStatus.COMPLETE"' in status.stdout

    out = tmp_path / "out"
    pulled = kaggle_cli("kernels", "output", "alice/tiny-kernel", "-p", str(out), emulator=emu)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "output" / "deep" / "a.txt").read_text() == "A"
    assert (out / "top.txt").read_text() == "T"
    log_text = (out / "tiny-kernel.log").read_text()
    entries = json.loads(log_text)
    assert log_text.startswith("[{") and log_text.endswith("\n]")
    assert all(line.startswith(",{") for line in log_text.split("\n")[1:-1])
    stdout = "".join(e["data"] for e in entries if e["stream_name"] == "stdout")
    stderr = "".join(e["data"] for e in entries if e["stream_name"] == "stderr")
    assert "hello from Batch" in stdout
    assert "careful" in stderr
    times = [e["time"] for e in entries]
    assert times == sorted(times) and all(t >= 0 for t in times)

    # The request record: exactly one SaveKernel, its body as the client sent it, no credentials.
    saves = emu.calls("SaveKernel")
    assert len(saves) == 1
    body = saves[0].body
    assert body["slug"] == "alice/tiny-kernel" and body["kernelType"] == "notebook"
    assert body["machineShape"] == "NvidiaTeslaT4" and body["enableGpu"] is True
    assert body["modelDataSources"] == [GEMMA]
    assert saves[0].path == "/api/v1/kernels.KernelsApiService/SaveKernel"  # absolute-form proxy request
    assert saves[0].user == "alice"
    assert "emulator-key" not in repr(emu.requests)


def test_failing_notebook_ends_in_error_with_failure_message(kaggle_cli, kaggle_api, tmp_path):
    folder = write_kernel(tmp_path / "kern", "alice/broken-kernel",
                          notebook_json("print('before')", "raise ValueError('boom at cell two')"))
    assert kaggle_api.kernels_push(str(folder)).version_number == 1
    assert _poll_statuses(kaggle_api, "alice/broken-kernel/1")[-1] == "ERROR"
    resp = kaggle_api.kernels_status("alice/broken-kernel/1")
    assert "boom at cell two" in resp.failure_message
    cli = kaggle_cli("kernels", "status", "alice/broken-kernel")
    assert "KernelWorkerStatus.ERROR" in cli.stdout and "Failure message" in cli.stdout
    log = kaggle_api.kernels_logs("alice/broken-kernel/1")
    assert "before" in "".join(e["data"] for e in json.loads(log) if e["stream_name"] == "stdout")


def test_script_kernel_sees_kaggle_layout_without_credentials(kaggle_emulator, kaggle_api, tmp_path):
    script = (
        "import json, os\n"
        "try:\n    open('../input/x', 'w'); writable = True\nexcept OSError:\n    writable = False\n"
        "json.dump({'cwd': os.path.basename(os.getcwd()), 'input_writable': writable,\n"
        "           'key': os.environ.get('KAGGLE_KEY'),\n"
        "           'run_type': os.environ.get('KAGGLE_KERNEL_RUN_TYPE'),\n"
        "           'proxy': os.environ.get('HTTP_PROXY')}, open('env.json', 'w'))\n"
    )
    folder = write_kernel(tmp_path / "kern", "alice/env-check", script, kernel_type="script")
    kaggle_api.kernels_push(str(folder))
    kaggle_emulator.wait_until("alice", "env-check", 1)
    files, _ = kaggle_api.kernels_output("alice/env-check", str(tmp_path / "out"))
    seen = json.loads((tmp_path / "out" / "env.json").read_text())
    # root ignores permission bits; elsewhere input/ is read-only as /kaggle/input is
    writable = os.geteuid() == 0
    assert seen == {"cwd": "working", "input_writable": writable, "key": None, "run_type": "Batch",
                    "proxy": None}


def test_session_timeout_kills_the_kernel(kaggle_emulator, kaggle_api, tmp_path):
    folder = write_kernel(tmp_path / "kern", "alice/sleepy-kernel", "import time\ntime.sleep(60)\n",
                          kernel_type="script")
    kaggle_api.kernels_push(str(folder), timeout="1")
    version = kaggle_emulator.wait_until("alice", "sleepy-kernel", 1, timeout=30)
    assert version.status == "ERROR" and "session timeout" in version.failure_message



def test_kernel_sources_mount_the_latest_completed_output_read_only(kaggle_emulator, kaggle_api, tmp_path):
    """kernel_sources: the named kernel's latest COMPLETE version's output under input/<slug>/ (the layout of
    /kaggle/input/<slug>/, found through $TUNIX_RT_INPUT_DIR); a later failed version is not what is mounted,
    and what the kernel writes there never reaches the source kernel's served outputs."""
    kaggle_emulator.seed_version("alice", "prev-session", outputs={"output/checkpoint/12/state": b"step 12"})
    kaggle_emulator.seed_version("alice", "prev-session", status="ERROR", outputs={"output/broken": b"x"})
    reader = ("import os, pathlib\n"
              "root = pathlib.Path(os.environ['TUNIX_RT_INPUT_DIR']) / 'prev-session'\n"
              "print('found', (root / 'output/checkpoint/12/state').read_text(), (root / 'output/broken').exists())\n"
              "try:\n    (root / 'output/new').write_text('x')\nexcept OSError:\n    print('read-only')\n")
    folder = write_kernel(tmp_path / "next", "alice/next-session", reader, kernel_type="script",
                          kernel_sources=["alice/prev-session"])
    kaggle_api.kernels_push(str(folder))
    version = kaggle_emulator.wait_until("alice", "next-session", 1, timeout=60)
    assert version.status == "COMPLETE", version.failure_message
    log = "".join(entry["data"] for entry in json.loads(version.log_path.read_text()))
    assert "found step 12 False" in log  # (read-only only for a non-root kernel: root ignores the modes)
    assert not (kaggle_emulator.version("alice", "prev-session", 1).working_dir / "output/new").exists()
    assert kaggle_emulator.calls("SaveKernel")[-1].body["kernelDataSources"] == ["alice/prev-session"]


# ---- paging ------------------------------------------------------------------------------------------


def test_output_paging_follows_every_page(kaggle_emulator, kaggle_api, tmp_path):
    names = {f"output/f{i:02d}.txt": f"file {i}".encode() for i in range(7)} | {"a/b/c.bin": b"\x00\x01"}
    kaggle_emulator.seed_version("alice", "many-files", outputs=names,
                                 log_entries=[{"stream_name": "stdout", "time": 0.5, "data": "done\n"}])
    files, token = kaggle_api.kernels_output("alice/many-files", str(tmp_path / "out"), page_size=3)
    assert token is None or token == ""
    for name, data in names.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    pages = kaggle_emulator.calls("ListKernelSessionOutput")
    assert len(pages) == 3
    assert [bool(p.body.get("pageToken")) for p in pages] == [False, True, True]
    assert json.loads((tmp_path / "out" / "many-files.log").read_text())[0]["data"] == "done\n"


def test_page_size_cap_fault_shrinks_pages(kaggle_emulator, tmp_path):
    kaggle_emulator.seed_version("alice", "capped", outputs={f"f{i}": b"x" for i in range(5)})
    kaggle_emulator.set_faults(page_size_cap=2)
    url = kaggle_emulator.url + "/v1/kernels.KernelsApiService/ListKernelSessionOutput"
    body = {"userName": "alice", "kernelSlug": "capped", "pageSize": 50}
    sizes = []
    while True:
        page = requests.post(url, json=body, headers=_basic(), timeout=10).json()
        sizes.append(len(page["files"]))
        if not page.get("nextPageToken"):
            break
        body["pageToken"] = page["nextPageToken"]
    assert sizes == [2, 2, 1]


# ---- faults ------------------------------------------------------------------------------------------


def test_429_carries_retry_after_and_resource_exhausted(kaggle_emulator, kaggle_api):
    kaggle_emulator.seed_version("alice", "done-kernel")
    kaggle_emulator.set_faults(retry_after=2)
    kaggle_emulator.script_faults("GetKernelSessionStatus", "429")
    with pytest.raises(requests.HTTPError) as err:
        kaggle_api.kernels_status("alice/done-kernel")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "2"
    assert err.value.response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert kaggle_api.kernels_status("alice/done-kernel").status.name == "COMPLETE"  # the script is used up


@pytest.mark.parametrize("kind", ["500", "503"])
def test_5xx_answers(kaggle_emulator, kaggle_api, kind):
    kaggle_emulator.seed_version("alice", "done-kernel")
    kaggle_emulator.script_faults("GetKernelSessionStatus", kind)
    with pytest.raises(requests.HTTPError) as err:
        kaggle_api.kernels_status("alice/done-kernel")
    assert err.value.response.status_code == int(kind)
    assert err.value.response.json()["code"] == int(kind)


def test_dropped_connection_raises_connection_error(kaggle_emulator, kaggle_api):
    kaggle_emulator.seed_version("alice", "done-kernel")
    kaggle_emulator.script_faults("GetKernelSessionStatus", "drop")
    with pytest.raises(requests.ConnectionError):
        kaggle_api.kernels_status("alice/done-kernel")
    assert kaggle_emulator.calls("GetKernelSessionStatus")[0].status is None


def test_drop_after_save_creates_the_version_but_loses_the_answer(make_emulator, tmp_path):
    emu = make_emulator(execute_fn=FakeRun())
    emu.script_faults("SaveKernel", "drop_after")
    folder = write_kernel(tmp_path / "kern", "alice/ambiguous-push", "print(1)\n", kernel_type="script")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")} | emu.client_env()
    env["KAGGLE_CONFIG_DIR"] = str(tmp_path)
    code = ("import sys, requests\nfrom kaggle.api.kaggle_api_extended import KaggleApi\n"
            "api = KaggleApi(); api.authenticate()\n"
            "try:\n    api.kernels_push(sys.argv[1])\n"
            "except requests.ConnectionError:\n    print('CONNERR')\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert "CONNERR" in out.stdout, out.stderr
    assert emu.version("alice", "ambiguous-push", 1) is not None  # it reached "Kaggle"


def test_random_faults_are_reproducible_with_a_seed(make_emulator):
    def sequence() -> list[int]:
        emu = make_emulator(faults=FaultConfig(seed=7, rate_429=0.3, rate_5xx=0.3, retry_after=0))
        emu.seed_version("alice", "kern-one")
        url = emu.url + STATUS_RPC
        return [requests.post(url, json={"userName": "alice", "kernelSlug": "kern-one"}, headers=_basic(),
                              timeout=10).status_code for _ in range(20)]

    first, second = sequence(), sequence()
    assert first == second
    assert {429, 200} <= set(first) and {500, 503} & set(first)


def test_stale_status_answers_the_previous_version_after_a_push(make_emulator, tmp_path):
    run = FakeRun(gated=True)
    emu = make_emulator(execute_fn=run, faults=FaultConfig(stale_polls=2))
    emu.seed_version("alice", "stale-kernel", status="COMPLETE")  # v1, finished long ago
    with emu.patch_client():
        from kaggle.api.kaggle_api_extended import KaggleApi

        os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = "alice", "emulator-key"
        try:
            api = KaggleApi()
            api.authenticate()
            folder = write_kernel(tmp_path / "kern", "alice/stale-kernel", "print(2)\n", kernel_type="script")
            assert api.kernels_push(str(folder)).version_number == 2
            run.started.wait(10)
            statuses = [api.kernels_status("alice/stale-kernel/2").status.name for _ in range(3)]
        finally:
            del os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]
    run.release()
    # #1201: the version label was ignored right after the push; the 3rd poll sees v2 itself.
    assert statuses == ["COMPLETE", "COMPLETE", "RUNNING"]


def test_latency_and_faults_change_at_run_time(kaggle_emulator):
    kaggle_emulator.seed_version("alice", "kern-one")
    url = kaggle_emulator.url + STATUS_RPC
    body = {"userName": "alice", "kernelSlug": "kern-one"}
    assert requests.post(url, json=body, headers=_basic(), timeout=10).status_code == 200
    ctl = requests.post(kaggle_emulator.url + "/_emulator/faults", json={"rate_5xx": 1.0}, timeout=10)
    assert ctl.json()["rate_5xx"] == 1.0
    assert requests.post(url, json=body, headers=_basic(), timeout=10).status_code in (500, 503)
    kaggle_emulator.set_faults(rate_5xx=0.0, targets=["SaveKernel"], rate_429=1.0)
    assert requests.post(url, json=body, headers=_basic(), timeout=10).status_code == 200


def test_url_ttl_expires_output_urls(kaggle_emulator):
    kaggle_emulator.seed_version("alice", "kern-one", outputs={"a.txt": b"a"})
    kaggle_emulator.set_faults(url_ttl=0.0)
    page = requests.post(kaggle_emulator.url + "/v1/kernels.KernelsApiService/ListKernelSessionOutput",
                         json={"userName": "alice", "kernelSlug": "kern-one"}, headers=_basic(),
                         timeout=10).json()
    time.sleep(0.01)
    got = requests.get(page["files"][0]["url"], timeout=10)
    assert got.status_code == 400 and b"ExpiredToken" in got.content


# ---- protocol surface ------------------------------------------------------------------------------


def test_both_path_forms_and_absolute_form_proxy_requests(kaggle_emulator):
    kaggle_emulator.seed_version("alice", "kern-one")
    body = {"userName": "alice", "kernelSlug": "kern-one", "versionLabel": "v1"}
    for path in (STATUS_RPC, "/v1/kernels.KernelsApiService/GetKernelSessionStatus"):
        got = requests.post(kaggle_emulator.url + path, json=body, headers=_basic(), timeout=10)
        assert got.status_code == 200 and got.json() == {"status": "COMPLETE"}
    proxied = requests.post("http://localhost" + STATUS_RPC, json=body, headers=_basic(), timeout=10,
                            proxies={"http": kaggle_emulator.url})
    assert proxied.json() == {"status": "COMPLETE"}
    assert [r.path for r in kaggle_emulator.calls("GetKernelSessionStatus")] == [
        STATUS_RPC, "/v1/kernels.KernelsApiService/GetKernelSessionStatus", STATUS_RPC]
    assert kaggle_emulator.calls("GetKernelSessionStatus")[-1].host == "localhost"


def test_hidden_kernel_is_403_unknown_version_404_and_the_old_404_behind_a_flag(kaggle_emulator, kaggle_api):
    """Kaggle answers 403 for a kernel the caller cannot see, existing or not (kaggle-cli PR #1201's table);
    a version that is not there of a kernel the caller sees answers 404 (a bare "1" too)."""
    kaggle_emulator.seed_version("alice", "kern-one")
    kaggle_emulator.seed_version("bob", "private-kern")  # someone else's private kernel
    for body in ({"userName": "alice", "kernelSlug": "nope"}, {"userName": "bob", "kernelSlug": "private-kern"}):
        got = requests.post(kaggle_emulator.url + STATUS_RPC, json=body, headers=_basic(), timeout=10)
        assert got.status_code == 403 and got.json() == {"code": 403,
                                                         "message": "Permission 'kernels.get' was denied"}
    for label in ("v9", "1"):
        body = {"userName": "alice", "kernelSlug": "kern-one", "versionLabel": label}
        got = requests.post(kaggle_emulator.url + STATUS_RPC, json=body, headers=_basic(), timeout=10)
        assert got.status_code == 404 and got.json()["code"] == 404
    # The real client turns that 403 into its "wrong kernel slug" ValueError, as against Kaggle.
    with pytest.raises(ValueError, match="Permission 'kernels.get' was denied"):
        kaggle_api.kernels_status("alice/nope-kernel")
    stream = requests.get(kaggle_emulator.url + "/api/v1/kernels/logs/stream/bob/private-kern", headers=_basic(),
                          timeout=10)
    assert stream.status_code == 403
    kaggle_emulator.set_behaviour(hidden_kernel_status=404)  # the emulator's old answer, behind a flag
    got = requests.post(kaggle_emulator.url + STATUS_RPC, json={"userName": "alice", "kernelSlug": "nope"},
                        headers=_basic(), timeout=10)
    assert got.status_code == 404


def test_unauthenticated_and_rejected_keys_get_401(make_emulator, kaggle_cli):
    emu = make_emulator(auth=AuthConfig(rejected_keys=frozenset({"revoked-key"})))
    emu.seed_version("alice", "kern-one")
    body = {"userName": "alice", "kernelSlug": "kern-one"}
    got = requests.post(emu.url + STATUS_RPC, json=body, timeout=10)
    assert got.status_code == 401 and got.json() == {"code": 401, "message": "Unauthenticated"}
    got = requests.post(emu.url + STATUS_RPC, json=body, headers=_basic(key="revoked-key"), timeout=10)
    assert got.status_code == 401
    cli = kaggle_cli("kernels", "status", "alice/kern-one", emulator=emu, key="revoked-key")
    assert cli.returncode != 0
    assert "revoked-key" not in repr(emu.requests)


def test_access_token_auth_through_introspect_token(make_emulator, kaggle_cli):
    emu = make_emulator(auth=AuthConfig(tokens={"KGAT_emulated": "alice"}))
    emu.seed_version("alice", "kern-one")
    cli = kaggle_cli("kernels", "status", "alice/kern-one", emulator=emu, token="KGAT_emulated")
    assert "KernelWorkerStatus.COMPLETE" in cli.stdout, cli.stdout + cli.stderr
    introspect = emu.calls("IntrospectToken")
    assert introspect and introspect[0].body == {"token": "<redacted>"}
    assert emu.calls("GetKernelSessionStatus")[0].user == "alice"
    assert "KGAT_emulated" not in repr(emu.requests)


def test_push_validation_invalid_sources_and_error_hook(kaggle_emulator, kaggle_api, kaggle_cli, tmp_path):
    folder = write_kernel(tmp_path / "kern", "alice/sources-kernel", "print(1)\n", kernel_type="script",
                          model_sources=[GEMMA, "someone/unknown-model/jax/base/1"],
                          dataset_sources=["someone/missing-data"])
    resp = kaggle_api.kernels_push(str(folder))
    assert resp.invalid_model_sources == ["someone/unknown-model/jax/base/1"]
    assert resp.invalid_dataset_sources == ["someone/missing-data"]
    assert not resp.error and resp.version_number == 1  # Kaggle still saves (and runs) the kernel

    kaggle_emulator.fail_next_pushes("Maximum batch GPU session count of 2 reached.")
    resp = kaggle_api.kernels_push(str(folder))
    assert resp.error == "Maximum batch GPU session count of 2 reached."
    assert kaggle_emulator.version("alice", "sources-kernel", 2) is None

    kaggle_emulator.fail_next_pushes("Notebook not found")
    cli = kaggle_cli("kernels", "push", "-p", str(folder))
    assert cli.returncode == 0 and "Kernel push error: Notebook not found" in cli.stdout  # the CLI's quirk

    url = kaggle_emulator.url + "/v1/kernels.KernelsApiService/SaveKernel"
    bad = [{"slug": "alice/Bad_Slug", "text": "x", "language": "python", "kernelType": "script"},
           {"slug": "alice/no-text-kernel", "language": "python", "kernelType": "script"},
           {"slug": "alice/nb-kernel", "text": "not json", "language": "python", "kernelType": "notebook"}]
    for body in bad:
        got = requests.post(url, json=body, headers=_basic(), timeout=10)
        assert got.status_code == 200 and got.json()["error"]
    other = requests.post(url, json={**bad[0], "slug": "bob/his-kernel"}, headers=_basic(), timeout=10)
    assert other.status_code == 403


def test_get_kernel_and_list_kernels(kaggle_emulator, kaggle_api, tmp_path):
    folder = write_kernel(tmp_path / "kern", "alice/pull-me", "print('pulled')\n", kernel_type="script",
                          machine_shape="TpuV5E8", enable_tpu=True)
    kaggle_api.kernels_push(str(folder))
    path = kaggle_api.kernels_pull("alice/pull-me", str(tmp_path / "pulled"), metadata=True)
    meta = json.loads((Path(path) / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/pull-me" and meta["machine_shape"] == "TpuV5E8"
    assert "print('pulled')" in (Path(path) / "pull-me.py").read_text()
    listed = kaggle_api.kernels_list(user="alice")
    assert [k.ref for k in listed] == ["alice/pull-me"]


# ---- hostile output names (test hook) --------------------------------------------------------------


def test_hostile_output_names_are_served_for_the_puller_to_refuse(kaggle_emulator, kaggle_api, tmp_path):
    kaggle_emulator.seed_version("alice", "hostile", outputs={"ok.txt": b"fine"})
    kaggle_emulator.add_output("alice", "hostile", 1, "../evil", b"escaped")
    kaggle_emulator.add_output("alice", "hostile", 1, "/abs/path", b"absolute")
    kaggle_emulator.add_output_symlink("alice", "hostile", 1, "link", "/etc/passwd")
    page = requests.post(kaggle_emulator.url + "/v1/kernels.KernelsApiService/ListKernelSessionOutput",
                         json={"userName": "alice", "kernelSlug": "hostile"}, headers=_basic(),
                         timeout=10).json()
    by_name = {f["fileName"]: f["url"] for f in page["files"]}
    assert set(by_name) == {"ok.txt", "link", "../evil", "/abs/path"}
    assert requests.get(by_name["../evil"], timeout=10).content == b"escaped"
    assert requests.get(by_name["/abs/path"], timeout=10).content == b"absolute"
    assert requests.get(by_name["link"], timeout=10).content == b"/etc/passwd"  # never followed
    with pytest.raises(ValueError, match="Refusing to download"):
        kaggle_api.kernels_output("alice/hostile", str(tmp_path / "out"))
    assert not (tmp_path / "evil").exists()


# ---- log format and log stream ---------------------------------------------------------------------


def test_kaggle_log_writer_format_and_tolerant_parse(tmp_path):
    path = tmp_path / "log.json"
    with kaggle_log.KaggleLogWriter(path) as log:
        log.write("stdout", 0.1, "a\n")
        log.write("stderr", 0.25, "b\r")
        log.write("stdout", 1.0, "")  # empty chunks are not entries
    text = path.read_text()
    assert text == ('[{"stream_name":"stdout","time":0.1,"data":"a\\n"}\n'
                    ',{"stream_name":"stderr","time":0.25,"data":"b\\r"}\n]')
    assert kaggle_log.parse(text) == json.loads(text)
    assert kaggle_log.parse(text[:-2] + "\n,{\"stream_na") == json.loads(text)  # torn tail
    assert kaggle_log.render([]) == "[]" and kaggle_log.parse("") == []


def test_log_stream_is_sse_while_running_and_json_after(make_emulator, tmp_path):
    run = FakeRun(stdout=["step 1\n", "step 2\n"], gated=True)
    emu = make_emulator(execute_fn=run)
    with emu.patch_client():
        from kaggle.api.kaggle_api_extended import KaggleApi

        os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = "alice", "emulator-key"
        try:
            api = KaggleApi()
            api.authenticate()
            folder = write_kernel(tmp_path / "k", "alice/streamer", "pass\n", kernel_type="script")
            api.kernels_push(str(folder))
            run.started.wait(10)
            events = api.kernels_logs_stream("alice/streamer/1")
            first = next(events)
            run.release()
            rest = list(events)
            emu.wait_until("alice", "streamer", 1)
            after = list(api.kernels_logs_stream("alice/streamer"))
        finally:
            del os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]
    assert first["data"] == "step 1\n" and [e["data"] for e in rest] == ["step 2\n"]
    assert [e["data"] for e in after] == ["step 1\n", "step 2\n"]


# ---- persistence and the CLI verb ----------------------------------------------------------------


def test_restart_keeps_kernels_and_marks_lost_runs(make_emulator, tmp_path):
    from tunix_rt.emulator import Emulator

    emu = make_emulator()
    emu.seed_version("alice", "kern-one", outputs={"a.txt": b"a"})
    emu.stop()
    again = Emulator(emu.data_dir).start()
    try:
        got = requests.post(again.url + STATUS_RPC, json={"userName": "alice", "kernelSlug": "kern-one"},
                            headers=_basic(), timeout=10)
        assert got.json() == {"status": "COMPLETE"}
    finally:
        again.stop()


def test_emulator_command_prints_env_and_stops_on_ctrl_c(tmp_path):
    cmd = [sys.executable, "-m", "tunix_rt", "emulator", "--data-dir", str(tmp_path / "d"),
           "--rate-429", "0.5", "--seed", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("Kaggle API emulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        banner = "".join(proc.stdout.readline() for _ in range(9))
        assert "KAGGLE_API_ENVIRONMENT=LOCALHOST" in banner and f"HTTP_PROXY={url}" in banner
        assert requests.get(url + "/_emulator/faults", timeout=10).json()["rate_429"] == 0.5
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_hang_fault_stalls_the_answer(kaggle_emulator):
    kaggle_emulator.seed_version("alice", "kern-one")
    kaggle_emulator.set_faults(hang_seconds=30)
    kaggle_emulator.script_faults("GetKernelSessionStatus", "hang")
    with pytest.raises(requests.Timeout):  # the SDK itself sets no timeout: callers need their own deadline
        requests.post(kaggle_emulator.url + STATUS_RPC, json={"userName": "alice", "kernelSlug": "kern-one"},
                      headers=_basic(), timeout=0.5)


def test_download_faults_and_resume(kaggle_emulator, kaggle_api, tmp_path):
    data = bytes(range(256)) * 12_000  # 3 MB: the client writes 1 MiB chunks, so half the body leaves 1
    kaggle_emulator.seed_version("alice", "big-output", outputs={"output/model.bin": data})
    kaggle_emulator.script_faults("blob", "500")
    with pytest.raises(requests.HTTPError):
        kaggle_api.kernels_output("alice/big-output", str(tmp_path / "a"))
    kaggle_emulator.script_faults("blob", "drop_after")  # half the body, then the connection breaks
    kaggle_api.kernels_output("alice/big-output", str(tmp_path / "b"))
    assert (tmp_path / "b" / "output" / "model.bin").read_bytes() == data
    blobs = kaggle_emulator.calls("blob")
    assert [b.status for b in blobs][-2:] == [None, 206]  # the client resumed with a Range request


# ---- Kaggle's own ways (behaviour.py), through the real client -------------------------------------------


def test_some_429s_come_without_retry_after(kaggle_emulator, kaggle_api):
    """kaggle-cli #938: Retry-After is not reliable; every second 429 here has none."""
    kaggle_emulator.seed_version("alice", "done-kernel")
    kaggle_emulator.script_faults("GetKernelSessionStatus", "429", "429")
    headers = []
    for _ in range(2):
        with pytest.raises(requests.HTTPError) as err:
            kaggle_api.kernels_status("alice/done-kernel")
        headers.append(err.value.response.headers.get("Retry-After"))
    assert headers == ["1", None]


def test_current_version_number_lags_until_the_session_ends(make_emulator, kaggle_api, tmp_path):
    run = FakeRun(gated=True)
    emu = make_emulator(execute_fn=run)
    emu.set_behaviour(version_lags=True)
    emu.seed_version("alice", "lag-kernel")
    with emu.patch_client():
        kaggle_api.kernels_push(str(write_kernel(tmp_path / "k", "alice/lag-kernel", "print(1)\n",
                                                 kernel_type="script")))
        assert run.started.wait(30)
        (meta,) = kaggle_api.kernels_list(user="alice", search="lag-kernel")
        assert meta.current_version_number == 1  # v2 runs, the field still says v1
        assert kaggle_api.kernels_status("alice/lag-kernel/2").status.name == "RUNNING"  # asked for, it is there
        run.release()
        emu.wait_until("alice", "lag-kernel", 2)
        (meta,) = kaggle_api.kernels_list(user="alice", search="lag-kernel")
        assert meta.current_version_number == 2


@pytest.mark.parametrize("clean", [False, True], ids=["socket-dropped", "clean-end"])
def test_log_stream_idle_cut_and_replay_from_the_start(make_emulator, kaggle_api, tmp_path, clean):
    run = FakeRun(stdout=["one\n", "two\n"], gated=True)
    emu = make_emulator(execute_fn=run)
    emu.set_behaviour(stream_idle_cut_s=0.5, stream_cut_clean=clean)
    with emu.patch_client():
        kaggle_api.kernels_push(str(write_kernel(tmp_path / "k", "alice/quiet-kernel", "print(1)\n",
                                                 kernel_type="script")))
        assert run.started.wait(30)
        for _ in range(2):  # each connection replays the log from the start, then is cut: no END_OF_LOG
            seen = []
            try:
                for event in kaggle_api.kernels_logs_stream("alice/quiet-kernel/1"):
                    seen.append(event["data"])
            except requests.exceptions.ChunkedEncodingError:
                assert not clean
            else:
                assert clean  # the client's reader just stops: only the missing END_OF_LOG tells a cut
            assert seen == ["one\n", "two\n"]
        run.release()
        emu.wait_until("alice", "quiet-kernel", 1)
        assert [e["data"] for e in kaggle_api.kernels_logs_stream("alice/quiet-kernel/1")] == ["one\n", "two\n"]
    assert [r.fault for r in emu.calls("logs_stream")] == ["idle_cut", "idle_cut", None]


def test_an_unknown_machine_shape_is_refused_in_band(kaggle_emulator, kaggle_cli, tmp_path):
    folder = write_kernel(tmp_path / "kern", "alice/odd-shape", "print(1)\n", kernel_type="script")
    out = kaggle_cli("kernels", "push", "-p", str(folder), "--accelerator", "NvidiaV100")
    assert out.returncode == 0 and "Invalid machine shape 'NvidiaV100'" in out.stdout  # the CLI exits 0 (!)
    assert kaggle_emulator.version("alice", "odd-shape", 1) is None
    out = kaggle_cli("kernels", "push", "-p", str(folder), "--accelerator", "NvidiaTeslaT4")
    assert "successfully pushed" in out.stdout


def test_quota_endpoint_through_the_kaggle_cli(make_emulator, kaggle_cli):
    from tunix_rt.emulator import QuotaConfig

    emu = make_emulator(quota=QuotaConfig(gpu_used_h=12.5, gpu_allowed_h=30, tpu_used_h=0, tpu_allowed_h=20))
    out = kaggle_cli("quota", emulator=emu)
    assert out.returncode == 0, out.stderr
    assert "12.50h" in out.stdout and "17.50h" in out.stdout and "30.00h" in out.stdout and "20.00h" in out.stdout
    emu.serve_quota = False
    assert kaggle_cli("quota", emulator=emu).returncode != 0


def test_model_instance_lookup(kaggle_emulator, kaggle_api):
    found = kaggle_api.model_instance_get("google/gemma-3/transformers/gemma-3-1b-it")
    assert found.slug == "gemma-3-1b-it" and found.version_number == 1
    with pytest.raises(requests.HTTPError) as err:
        kaggle_api.model_instance_get("nobody/nothing/jax/base")
    assert err.value.response.status_code == 403


def test_new_script_and_the_cancel_statuses(make_emulator, kaggle_api, tmp_path):
    run = FakeRun(gated=True)
    emu = make_emulator(execute_fn=run)
    emu.set_behaviour(new_script_s=0.5)
    with emu.patch_client():
        kaggle_api.kernels_push(str(write_kernel(tmp_path / "k", "alice/cancel-me", "print(1)\n",
                                                 kernel_type="script")))
        assert kaggle_api.kernels_status("alice/cancel-me/1").status.name == "NEW_SCRIPT"
        assert run.started.wait(30)
        emu.cancel("alice", "cancel-me", 1, acknowledge_after_s=0.5)
        assert kaggle_api.kernels_status("alice/cancel-me/1").status.name == "CANCEL_REQUESTED"
        emu.wait_until("alice", "cancel-me", 1)
        assert kaggle_api.kernels_status("alice/cancel-me/1").status.name == "CANCEL_ACKNOWLEDGED"


def test_max_running_refuses_pushes_in_band_per_kind_and_records_the_peak(kaggle_emulator, kaggle_api, tmp_path):
    emu = kaggle_emulator
    emu.set_behaviour(max_running=2)
    slow = "import time; time.sleep(3)\n"
    folders = [write_kernel(tmp_path / f"k{i}", f"alice/limited-kernel-{i}", slow, kernel_type="script",
                            enable_gpu=True, machine_shape="NvidiaTeslaT4") for i in range(3)]
    assert [kaggle_api.kernels_push(str(f)).error for f in folders[:2]] == ["", ""]
    refused = kaggle_api.kernels_push(str(folders[2]))
    assert refused.error == "Maximum batch GPU session count of 2 reached."  # kaggle-cli #185, in-band
    assert emu.version("alice", "limited-kernel-2") is None
    cpu = write_kernel(tmp_path / "cpu", "alice/limited-cpu-kernel", "print(1)\n", kernel_type="script")
    assert not kaggle_api.kernels_push(str(cpu)).error  # another kind of session: its own count
    emu.wait_until("alice", "limited-kernel-0", 1, timeout=60)
    assert not kaggle_api.kernels_push(str(folders[2])).error  # a slot is free again
    assert emu.peak_running("alice") == 2 and emu.peak_running("bob") == 0
    with pytest.raises(ValueError, match="max_running"):
        emu.set_behaviour(max_running=0)
