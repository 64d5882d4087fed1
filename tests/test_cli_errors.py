"""`pstn` on bad input and signals: one line on standard error (`pstn: ...`), the documented exit status, no traceback.

Exit statuses: 2 a mistake in what the user typed or wrote, 1 a failed job, 130 Ctrl-C (SIGINT), 143 SIGTERM.
Nothing here downloads: the data tests use a temporary data folder and fake data sets (or fail before fetching)."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import pstn.data as D
from pstn.cli import main
from conftest import ROOT

PSTN = str(Path(sys.executable).parent / "pstn")
TINY = str(ROOT / "tests" / "experiments")


def pstn(*args, env=None, timeout=300):
    return subprocess.run([PSTN, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else os.environ | env)


def one_line_error(res, status: int, *needles: str) -> str:
    "The run ended with `status` and a single `pstn:` line on stderr holding every needle; returns that line."
    err = res.stderr.strip()
    assert res.returncode == status, (res.returncode, res.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("pstn: "), err
    assert all(n in err for n in needles), err
    return err


# --- YAML files: -f and the profile file next to a notebook ---------------------------------------------------

@pytest.fixture
def bad_yaml(tmp_path) -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text("n: [1, 2\nseed: 3\n")
    return f


@pytest.mark.parametrize("case", ["malformed", "folder", "missing"])
def test_parameters_file_errors_are_one_line(tmp_path, bad_yaml, case):
    path, needle = {"malformed": (bad_yaml, "is not valid YAML (line 2, column 5"),
                    "folder": (tmp_path, "is a folder"),
                    "missing": (tmp_path / "missing.yaml", "does not exist")}[case]
    res = pstn("run", "tiny", "-f", str(path), "--experiments-dir", TINY, "--results-dir", str(tmp_path / "r"),
               "--no-progress")
    one_line_error(res, 2, f"parameters file {path}", needle)
    assert not (tmp_path / "r").exists()                              # refused before any run folder is made


@pytest.fixture
def broken_profiles(tmp_path) -> Path:
    "A copy of a real experiment notebook next to a malformed profile file."
    exps = tmp_path / "exps"
    exps.mkdir()
    shutil.copy(ROOT / "nbs" / "experiments" / "loss_landscape.ipynb", exps)
    (exps / "loss_landscape.yml").write_text("cpu:\n  n_digits: [1, 2\n  threads: 1\n")
    return exps


@pytest.mark.parametrize("command", [["list"], ["params", "loss_landscape"], ["run", "loss_landscape"]])
def test_malformed_profile_file_is_one_line(tmp_path, broken_profiles, command):
    res = pstn(*command, "--experiments-dir", str(broken_profiles), *(["--results-dir", str(tmp_path / "r")]
                                                                      if command[0] == "run" else []))
    one_line_error(res, 2, f"profile file {broken_profiles / 'loss_landscape.yml'} is not valid YAML", "line 3")
    if command == ["list"]: assert "loss_landscape" in res.stdout and "profiles unreadable" in res.stdout
    assert not (tmp_path / "r").exists()


# --- the data folder ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["data", "list"], ["data", "fetch", "mnist"]])
def test_data_folder_that_is_a_file(tmp_path, command):
    f = tmp_path / "not-a-folder"
    f.write_text("")
    res = pstn(*command, env={"PSTN_DATA": str(f)})
    one_line_error(res, 2, f"the data folder {f} cannot be used", "is a file, not a folder")


@pytest.fixture
def fake_set(monkeypatch):
    "Replace the catalogue by one small fake data set served (offline) by a fake registry source."
    blobs = {"a.bin": b"a" * 3000, "b.bin": b"b" * 17}
    seen = []

    def serve(items, put, work):
        seen.append(Path(work).name)
        for spec, src in items:
            for f in spec.files: put(spec, f, src.members[f])

    spec = D.DataSpec("fake", "FAKE/fake", {f: "sha256:" + hashlib.sha256(b).hexdigest() for f, b in blobs.items()},
                      (D.Source("fake-registry", "fake registry", "registry", serve, dict(blobs)),))
    monkeypatch.setattr(D, "DATASETS", {"fake": spec})
    spec.seen = seen
    return spec


def run_main(*argv, capsys):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_corrupt_file_in_a_read_only_cache(tmp_path, fake_set, monkeypatch, capsys):
    folder = tmp_path / fake_set.folder
    folder.mkdir(parents=True)
    corrupt = folder / "a.bin"
    corrupt.write_bytes(b"not the published bytes")
    (folder / "b.bin").write_bytes(fake_set.sources[0].members["b.bin"])   # the other file is fine
    folder.chmod(0o555)
    try:
        probe = folder / ".probe"
        try: probe.write_bytes(b""); probe.unlink(); writable = True   # root ignores the mode
        except OSError: writable = False
        if writable:                                                   # so simulate the refused delete
            real_unlink = Path.unlink
            def unlink(self, missing_ok=False):
                if self == corrupt: raise PermissionError(13, "Permission denied", str(self))
                return real_unlink(self, missing_ok=missing_ok)
            monkeypatch.setattr(Path, "unlink", unlink)
        status, out, err = run_main("data", "fetch", "fake", "--root", str(tmp_path), capsys=capsys)
        assert status == 1, (status, out, err)
        assert "deleted, fetching" not in out and fake_set.seen == [], out   # nothing claimed, nothing fetched
        assert err.count("\n") == 1 and err.startswith("pstn: "), err
        assert f"{corrupt} fails its checksum" in err and "could not be deleted (Permission denied)" in err, err
        assert "pstn data fetch fake" in err and "writable" in err, err
        assert corrupt.exists()
        with pytest.raises(D.DataError, match="could not be deleted"):   # loading without download says the same
            D._ensure("fake", tmp_path, download=False)
    finally:
        folder.chmod(0o755)


# --- data list --verify as a gate -----------------------------------------------------------------------------

def test_data_list_verify_is_a_gate(tmp_path, fake_set, capsys):
    status, out, err = run_main("data", "list", "--root", str(tmp_path), capsys=capsys)
    assert status == 0 and "missing" in out, (status, out, err)              # without --verify: a report only
    status, out, err = run_main("data", "list", "--verify", "--root", str(tmp_path), capsys=capsys)
    assert status == 1 and err == "pstn: not verified: fake (missing); run `pstn data fetch` to repair\n", err

    assert run_main("data", "fetch", "fake", "--root", str(tmp_path), capsys=capsys)[0] == 0
    status, out, err = run_main("data", "list", "--verify", "--root", str(tmp_path), capsys=capsys)
    assert (status, err) == (0, "") and "verified" in out, (status, out, err)

    f = tmp_path / fake_set.folder / "b.bin"
    st = f.stat()
    f.write_bytes(b"B" * 17)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))                 # a corruption the stamp cannot see
    assert run_main("data", "list", "--root", str(tmp_path), capsys=capsys)[0] == 0
    status, out, err = run_main("data", "list", "--verify", "--root", str(tmp_path), capsys=capsys)
    assert status == 1 and "CORRUPT: b.bin" in out and "fake (corrupt)" in err, (status, out, err)

    f.unlink()
    status, out, err = run_main("data", "list", "--verify", "--root", str(tmp_path), capsys=capsys)
    assert status == 1 and "fake (incomplete)" in err, (status, out, err)


def test_data_list_verify_on_an_empty_folder_fails(tmp_path):
    res = pstn("data", "list", "--verify", "--root", str(tmp_path))
    one_line_error(res, 1, "pstn: not verified: mnist (missing)")
    assert pstn("data", "list", "--root", str(tmp_path)).returncode == 0


# --- work folders left by a fetch killed outright -------------------------------------------------------------

def test_stale_fetch_folders_are_removed(tmp_path, fake_set, capsys):
    host = getattr(D, "_HOST", socket.gethostname())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".fetch-{int(gone.stdout)}@{host}.k9k9k9k9"            # its process has exited
    live = tmp_path / f".fetch-{os.getpid()}@{host}.l1v3l1v3"                 # a fetch still running
    other = tmp_path / f".fetch-{int(gone.stdout)}@some-other-host.0th3r0th"  # another machine's: age decides
    old_name, old_other = tmp_path / ".fetch-abcd1234", tmp_path / f".fetch-1@some-other-host.01d01d01"
    for d in (stale, live, other, old_name, old_other):
        d.mkdir(); (d / "download.zip").write_bytes(b"half a download")
    two_days_ago = time.time() - 2 * 86400
    for d in (old_name, old_other): os.utime(d, (two_days_ago, two_days_ago))
    status, out, err = run_main("data", "fetch", "fake", "--root", str(tmp_path), capsys=capsys)
    assert status == 0, (out, err)
    left = sorted(p.name for p in tmp_path.glob(".fetch-*"))
    assert left == sorted([live.name, other.name]), left
    assert "removed 3 work folder(s) left by interrupted fetches" in out, out
    assert fake_set.seen and fake_set.seen[0].startswith(f".fetch-{os.getpid()}@{host}."), fake_set.seen


# --- signals --------------------------------------------------------------------------------------------------

def _default_sigint():                              # a background job may inherit SIGINT ignored; undo that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(cond, proc, seconds=120.0):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < seconds, "timed out"
        time.sleep(0.1)


def _gone(pid: int, seconds: float = 10.0) -> bool:
    "Whether process `pid` has exited (a zombie has) within `seconds`."
    import psutil
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE: return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def sleepy(tmp_path_factory) -> Path:
    "An experiment that notes its kernel's pid in the run folder, then sleeps."
    d = tmp_path_factory.mktemp("exps")
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# Sleepy"),
        new_code_cell("seconds = 120", metadata={"tags": ["parameters"]}),
        new_code_cell("import os, pathlib, time\n"
                      "pathlib.Path(os.environ['PSTN_RUN_DIR'], 'kernel.pid').write_text(str(os.getpid()))\n"
                      "time.sleep(seconds)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}),
        d / "sleepy.ipynb")
    return d


@pytest.mark.parametrize("sig, status, message", [(signal.SIGINT, 130, "pstn: interrupted (Ctrl-C)"),
                                                  (signal.SIGTERM, 143, "pstn: terminated by SIGTERM")])
def test_signal_during_run_records_interrupted(tmp_path, sleepy, sig, status, message):
    proc = subprocess.Popen([PSTN, "run", "sleepy", "--experiments-dir", str(sleepy), "--results-dir", str(tmp_path),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        _wait_for(lambda: list(tmp_path.glob("sleepy/*/kernel.pid")), proc)   # the kernel is executing the cell
        (pid_file,) = tmp_path.glob("sleepy/*/kernel.pid")
        record = pid_file.parent / "record.json"
        assert json.loads(record.read_text())["status"] == "running"
        kernel = int(pid_file.read_text())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill(); proc.communicate()
    assert proc.returncode == status, (proc.returncode, err)
    last = err.strip().splitlines()[-1]
    assert last == f"{message}; the run is recorded as interrupted in {record}", err
    # pstn itself prints no traceback. (The Jupyter kernel, shut down while busy, may log one of its own to the
    # same stderr, prefixed "[IPKernelApp] ERROR"; it is not pstn's and never names pstn's code.)
    assert "KeyboardInterrupt" not in err and "Terminated" not in err and "pstn/cli.py" not in err \
        and "pstn/runner.py" not in err, err
    rec = json.loads(record.read_text())
    assert rec["status"] == "interrupted" and rec["finished"] is not None, rec
    assert rec["error"]["ename"] == ("KeyboardInterrupt" if sig == signal.SIGINT else "Terminated"), rec["error"]
    assert _gone(kernel), f"the kernel {kernel} outlived pstn"


FETCH_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pstn.data as D
    from pstn.cli import main

    def slow(items, put, work):
        Path(sys.argv[1], "started").write_text(str(work))
        time.sleep(120)

    D.DATASETS = {"fake": D.DataSpec("fake", "FAKE/fake", {"a.bin": "sha256:00"},
                                     (D.Source("slow", "slow source", "web", slow),))}
    sys.exit(main(["data", "fetch", "fake", "--root", sys.argv[1]]))
""")


@pytest.mark.parametrize("sig, status, message", [(signal.SIGINT, 130, "pstn: interrupted (Ctrl-C)"),
                                                  (signal.SIGTERM, 143, "pstn: terminated by SIGTERM")])
def test_signal_during_fetch(tmp_path, sig, status, message):
    proc = subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        _wait_for(lambda: (tmp_path / "started").exists(), proc)
        work = Path((tmp_path / "started").read_text())
        assert work.is_dir() and work.parent == tmp_path
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill(); proc.communicate()
    assert (proc.returncode, err) == (status, message + "\n"), (proc.returncode, err)
    assert not list(tmp_path.glob(".fetch-*"))                        # the work folder went with it
