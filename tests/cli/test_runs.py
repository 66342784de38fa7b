"""`python -m calisim` run and the bundled scenarios end to end: the seed transcript through the
CLI, a run's steps as JSON, bad input refused before anything is built, and Ctrl-C or SIGTERM
stopping the run and everything it started."""

import ipaddress
import json
import os
import re
import signal
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from calisim.emulation import wait_until
from calisim.scenarios import transcript

from tests.conftest import PYTHON, running_daemons

pytestmark = pytest.mark.emulation


SEED_TRANSCRIPT = resources.files("calisim.scenarios").joinpath("transcripts/two_host.txt")


def calisim(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "calisim", *args], capture_output=True, text=True, timeout=600, **kwargs)


def test_the_seed_end_to_end_through_the_cli(runs, untouched):
    done = calisim("two-host", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    results = document["steps"]
    assert len(results) == len(transcript.parse(SEED_TRANSCRIPT.read_text()))
    assert all(r["passed"] for r in results)
    assert set(results[0]) == {"host", "command", "expect", "rc", "stdout", "stderr", "passed", "seconds"}
    by_command = {r["command"]: r for r in results}
    status = by_command["calicoctl node status"]["stdout"]
    assert status.startswith("Calico process is running.\n\nIPv4 BGP status\n+---------------+")
    assert "| 192.168.3.228 | node-to-node mesh | up    |" in status
    assert by_command["calicoctl get node"]["stdout"] == "NAME            \n192.168.3.228   \n192.168.3.229   \n"
    assert by_command["calicoctl get ipPool"]["stdout"] == (  # as the seed shows it
        "CIDR                       \n192.168.0.0/16             \nfd80:24e2:f998:72d6::/64   \n")
    assert "\nIPv6 BGP status\nNo IPv6 peers found.\n" in status
    assert by_command["calicoctl get ipPool -o wide"]["stdout"] == (
        "CIDR                       NAT     IPIP    \n10.10.0.0/16               true    true    \n"
        "fd80:24e2:f998:72d6::/64   false   false   \n")
    assert "ttl=63" in by_command["docker exec workload-A ping -c 4 workload-C"]["stdout"]
    assert "ttl=62" in by_command["docker exec workload-A ping -c 4 workload-E"]["stdout"]
    addresses = dict(re.findall(r"^(workload-[A-E]): cali0:([0-9.]+)/32$", "".join(r["stdout"] for r in results), re.M))
    assert sorted(addresses) == ["workload-A", "workload-B", "workload-C", "workload-D", "workload-E"]
    blocks = {name: ipaddress.ip_network(f"{ip}/26", strict=False) for name, ip in addresses.items()}
    assert all(block.subnet_of(ipaddress.ip_network("10.10.0.0/16")) for block in blocks.values())
    assert blocks["workload-A"] == blocks["workload-B"] == blocks["workload-C"] != blocks["workload-D"] == blocks["workload-E"]
    run_dir = next(p for p in runs.iterdir() if p.name != "latest")
    for name in ("calisim.log", "transcript.json", "etcd/etcd.log", "hosts/host1/run/bird.cfg",
                 "hosts/host2/log/node.log", "hosts/host2/log/bird.log"):
        assert (run_dir / name).is_file(), name
    assert f"transcript: {len(results)} passed, 0 failed" in done.stderr
    summary = document["summary"]
    assert summary["mismatches"] == []
    measured = {(p["source"], p["destination"]): p["probe"] for p in summary["pairs"]}
    assert measured[("workload-A", "workload-C")]["ttl"] == 63 and measured[("workload-A", "workload-C")]["received"] == 4
    assert measured[("workload-A", "workload-E")]["ttl"] == 62 and measured[("workload-A", "workload-E")]["received"] == 4
    assert summary["addresses"] == addresses


def test_the_seed_from_the_cli_with_host1_and_host2_on_different_servers(runs, untouched):
    """The command line's own SIGTERM handler must not be inherited by the run's forks (pyroute2
    forks the run to reach a server's namespace and ends the copy with SIGTERM): it once stopped
    a server, or removed the ssh control directory, while the run was starting."""
    done = calisim("two-host", "--servers", "sim:2", "--place", "host1=server1", "--place", "host2=server2")
    assert done.returncode == 0, done.stderr
    assert re.search(r"transcript: (\d+) passed, 0 failed", done.stderr), done.stderr
    run_dir = next(p for p in runs.iterdir() if p.name != "latest")
    for name in ("servers/server2/hosts/host2/log/node.log", "servers/server2/hosts/host2/log/bird.log",
                 "servers/server2/sshd.log", "hosts/host1/log/node.log"):
        assert (run_dir / name).is_file(), name
    assert not _processes_naming(run_dir), "processes of the run left running"


def _processes_naming(path: Path) -> list[str]:
    """Command lines that name path (a simulated server's init and sshd name its run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace") if entry.name.isdigit() else ""
        except OSError:
            continue
        if str(path) in argv:
            found.append(argv.replace("\0", " "))
    return found


def test_run_prints_the_steps_as_json(runs, untouched, tmp_path):
    script = tmp_path / "steps.txt"
    script.write_text("host2$ hostname\nhost1! false\n")
    done = calisim("run", str(script), "--topology", "two_host", "--json")
    assert done.returncode == 0, done.stderr
    assert [(r["host"], r["command"], r["expect"], r["rc"], r["stdout"], r["passed"]) for r in json.loads(done.stdout)] == [
        ("host2", "hostname", "success", 0, "host2\n", True), ("host1", "false", "failure", 1, "", True)]


@pytest.mark.parametrize("args, message", [
    (["run", "-", "--topology", "two_host"], "line 1: unknown host 'host9'"),
    (["run", "-", "--topology", "ring"], "unknown topology 'ring'"),
    (["run", "-", "--topology", "flat", "--hosts", "0"], "takes 1 to 1000 hosts"),
    (["run", "/nonexistent/steps.txt", "--topology", "two_host"], "No such file"),
    (["run", "/dev/null", "--topology", "two_host"], "the transcript has no steps (with --cli, an empty one"),
])
def test_cli_rejects_bad_input_before_building_anything(runs, untouched, args, message):
    done = calisim(*args, input="host9$ true\n")
    assert done.returncode != 0 and message in done.stderr
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_and_everything_it_started(runs, untouched, tmp_path, signum):
    script = tmp_path / "steps.txt"
    script.write_text("host1$ calicoctl node run\nhost1$ sleep 300\n")
    process = subprocess.Popen([PYTHON, "-m", "calisim", "run", str(script), "--topology", "two_host"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until(lambda: any("bird" in cmd for _, cmd in running_daemons()), 60, what="BIRD to start")
        # Ctrl-C reaches the whole foreground process group; SIGTERM is sent to the command alone.
        os.killpg(process.pid, signum) if signum == signal.SIGINT else process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum
    assert "stopped" in (Path(os.environ["CALISIM_RUNS"]) / "latest" / "calisim.log").read_text()



@pytest.mark.parametrize("args", [["run", "-", "--topology", "two_host", "--etcd-members", "2"],
                                  ["run", "-", "--topology", "fabric", "--etcd-members", "4"],
                                  ["up", "flat", "--etcd-members", "4"]])
def test_an_even_etcd_cluster_is_refused_with_etcds_reason(runs, untouched, args):
    done = calisim(*args, input="host1$ true\n")
    count = args[-1]
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"calisim: --etcd-members {count}: etcd wants an odd number of members")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert not runs.exists() or not any(runs.iterdir())


def test_the_outcome_is_measured_once_from_its_step_on_or_else_after_the_transcript():
    import threading
    from dataclasses import replace

    from calisim.cli.runs import Outcome
    from calisim.scenarios.bundled import SCENARIOS

    steps = transcript.parse("host1$ make\nhost1$ look\nhost1$ look again\n")
    checked: list[str] = []

    def check(cluster):
        checked.append(threading.current_thread().name)
        return "view", {"cluster": cluster}

    early = Outcome("cluster", replace(SCENARIOS["two-host"], check=check, measure_from="look"))
    for step in steps:
        early.passed(transcript.StepResult(step, 0, "", "", True, 0.0))
    assert early.measured() == ("view", {"cluster": "cluster"})
    early.close()
    assert len(checked) == 1 and checked[0].startswith("outcome")
    late = Outcome("cluster", replace(SCENARIOS["two-host"], check=check, measure_from=None))
    late.passed(transcript.StepResult(steps[1], 0, "", "", True, 0.0))
    assert late.measured()[0] == "view" and checked[1] == threading.current_thread().name
    late.close()
