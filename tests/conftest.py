"""Test session set-up: as root the whole session re-executes inside calisim's private
namespace (so no test can touch the machine's network); without root, emulation tests skip."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from calisim.emulation import sandbox
from calisim.datastore import Datastore, Synchronous, local_etcd

ROOT = os.geteuid() == 0

# Hypothesis profiles: `ci` keeps `make test` fast; `scale` is for a long run:
#   CALISIM_HYPOTHESIS_PROFILE=scale .venv/bin/python -m pytest tests/test_ipam.py
settings.register_profile("ci", max_examples=40, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("scale", max_examples=200, stateful_step_count=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CALISIM_HYPOTHESIS_PROFILE", "ci"))
SCALE = os.environ.get("CALISIM_HYPOTHESIS_PROFILE") == "scale"


TEST_RUNS = Path("/tmp/calisim-test-runs")  # the session's default base for run directories
KEPT_FOR = 24 * 3600  # seconds a run directory kept for reading outlives its session


def pytest_configure(config):
    if ROOT:
        sandbox.enter()
        remove_kept_run_directories(time.time() - KEPT_FOR)
        os.environ.setdefault("CALISIM_RUNS", str(TEST_RUNS))


def remove_kept_run_directories(before: float) -> list[Path]:
    """Remove what earlier sessions kept for reading after a failure (run directories under
    TEST_RUNS, the fixtures' /tmp/cs-* and /tmp/cl-* bases) and last changed before `before`:
    each holds etcd's preallocated WAL, and a machine that runs `make test` day after day would
    fill its disk.  Newer ones stay: a session running beside this one may be using them."""
    kept = [*TEST_RUNS.glob("*"), *Path("/tmp").glob("cs-*"), *Path("/tmp").glob("cl-*")]
    old = [path for path in kept if not path.is_symlink() and path.is_dir() and path.stat().st_mtime < before]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def pytest_collection_modifyitems(config, items):
    if not ROOT:
        skip = pytest.mark.skip(reason="emulation tests need root: they build network namespaces")
        for item in items:
            if "emulation" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def etcd(tmp_path_factory):
    """A real etcd reachable only through its unix socket; yields its endpoint."""
    with local_etcd(tmp_path_factory.mktemp("etcd")) as endpoint:
        yield endpoint


@pytest.fixture
def ds(etcd):
    with Synchronous(Datastore(etcd)) as client:
        yield client


def dump(ds) -> dict:
    """Every key under /calico with its value: what 'nothing stored' is checked against."""
    return {entry.key: entry.value for entry in ds.list("/calico")}


def running_daemons() -> set[tuple[int, str]]:
    """bird, etcd, calico-node and mnexec processes visible from here (child PID namespaces included)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
        if words and (words[0] in ("bird", "etcd", "mnexec") or "calisim.node" in words):
            found.add((int(entry.name), " ".join(words)))
    return found


def in_a_throwaway_netns(script: str) -> str:
    """What a Python script printed, run in a network namespace of its own that goes with it (the
    kernel's tables a test builds touch nothing else); it must succeed."""
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def replay(cluster, text: str, keep_going: bool = False) -> list:
    """Run a transcript on a live cluster; on any failure, fail the test with the failed steps
    and every host's routes, BIRD state and calico-node log (also left in the run directory)."""
    from calisim.scenarios import transcript

    steps = transcript.parse(text)
    results = transcript.run(cluster, steps, keep_going=keep_going)
    failed = [(r.step.line, r.step.command, r.rc, r.stdout[-300:], r.stderr[-300:]) for r in results if not r.passed]
    if failed or len(results) != len(steps):
        pytest.fail(f"failed steps: {failed}\n\n{cluster.diagnose().read_text()}", pytrace=False)
    return results


def live_two_host(setup: str):
    """A two_host cluster with a transcript already replayed on it, kept for a test module (a fixture's body)."""
    import topologies
    from calisim.emulation import Cluster

    with Cluster(topologies.load("two_host")) as live:
        replay(live, setup)
        yield live


PYTHON = sys.executable


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.call_failed = outcome.get_result().failed


@pytest.fixture
def runs(monkeypatch, request):
    """A short, fresh base for run directories (unix socket paths below it must stay short);
    removed after a passing test, kept (and named) after a failing one."""
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    monkeypatch.setenv("CALISIM_RUNS", str(base / "runs"))
    yield base / "runs"
    remove_unless_failed(base, getattr(request.node, "call_failed", False), "run directories")


@pytest.fixture(scope="module")
def module_runs(request):
    """runs for a module's shared cluster: a base of its own under /tmp, not under pytest's
    basetemp (which another pytest session running beside this one may prune), set for this
    module only; removed after a passing module, kept (and named) after a failing one."""
    failed_before = request.session.testsfailed
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        yield base / "runs"
    remove_unless_failed(base, request.session.testsfailed > failed_before, "run directories")


def remove_unless_failed(base: Path, failed: bool, what: str) -> None:
    if failed:
        print(f"\n{what} kept for reading: {base}")
    else:
        shutil.rmtree(base)


@pytest.fixture(scope="session", autouse=True)
def machine_etc_untouched():
    """The machine's /etc is the same after the whole session as before it: every host of every
    run wrote only into its own copy-on-write view."""
    before = sandbox.etc_checksum()
    yield
    assert sandbox.etc_checksum() == before, "the machine's /etc changed during the session"


@pytest.fixture
def untouched():
    """Asserts, after the test, that this namespace and its processes are as they were before."""
    before, daemons = sandbox.snapshot(), running_daemons()
    yield
    assert running_daemons() == daemons, "processes left running"
    assert sandbox.snapshot() == before, "the caller's namespace changed"


# -- labs: the command line on labs of a module's own ------------------------------------------
def calisim(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "calisim", *args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def labs(request):
    """A private registry and a short run-directory base for this module's labs, all downed after it;
    the base removed when the module's tests passed (each lab's etcd alone preallocates 64 MiB of
    WAL: kept bases filled this machine's disk), kept and named when one failed."""
    from calisim.emulation import lab

    failed_before = request.session.testsfailed
    base = Path(tempfile.mkdtemp(prefix="cl-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        patch.setenv(lab.LABS_ENV, str(base / "labs"))
        yield lab.Registry(base / "labs")
        calisim("down", "--all")
    remove_unless_failed(base, request.session.testsfailed > failed_before, "labs' run directories")
