"""Labs end to end through the command line: up, ls, exec (with and without a terminal), run
--lab, inspect, graph, two labs side by side, a SIGKILLed lab cleaned up, down; and Mininet's
CLI showing its output.  One two-host lab (nodes started) is shared by the module.  Without root:
the registry forgets dead labs, the control protocol answers unknown operations."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from calisim.cli.fault import run_command
from calisim.emulation import lab
from calisim.process.pids import alive as process_alive, in_namespace as processes_in_namespace

from tests.conftest import PYTHON, calisim

LAB = "duo"


def in_pid_namespace(pidns: int) -> list[int]:
    return processes_in_namespace(pidns, "pid")


def ls_names() -> list[str]:
    done = calisim("ls")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "TOPOLOGY", "HOSTS", "AGE"]
    return [row.split()[0] for row in rows]


@pytest.fixture(scope="module")
def duo(labs):
    done = calisim("up", "two_host", "--start-nodes", "--name", LAB)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"lab {LAB} is up" in done.stdout
    assert "host1   calico host, etcd   192.168.3.229/24" in done.stdout
    assert f"calisim exec --lab {LAB} host1" in done.stdout
    return labs.find(LAB)


@pytest.mark.emulation
def test_up_then_ls_shows_the_lab_and_only_root_reaches_it(duo, labs):
    done = calisim("ls")
    row = next(line for line in done.stdout.splitlines() if line.startswith(LAB + " "))
    assert row.split()[1:4] == ["two_host", "host1,", "host2"]
    assert row.split()[-1] == duo.run_dir
    for path, mode in ((labs.path, 0o700), (Path(duo.run_dir), 0o700), (labs.path / f"{LAB}.json", 0o600),
                       (duo.socket, 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


@pytest.mark.emulation
def test_exec_runs_a_command_on_the_host_with_its_status(duo):
    done = calisim("exec", "--lab", LAB, "host1", "--", "calicoctl", "node", "status")
    assert done.returncode == 0, done.stderr
    assert "| 192.168.3.228 | node-to-node mesh | up    |" in done.stdout and "Established" in done.stdout
    done = calisim("exec", "host2", "--", "sh", "-c", "hostname; echo $ETCD_ENDPOINTS $DOCKER_HOST; "
                   "test -S /var/run/calico/bird.ctl && exit 3")
    assert (done.returncode, done.stdout) == (3, "host2\nhttp://192.168.3.229:2379 unix:///run/docker/docker.sock\n")


@pytest.mark.emulation
def test_writes_from_an_exec_shell_stay_in_the_hosts_view(duo):
    written = ("etc/calisim-lab/nested/file", "etc/calisim-lab-file", "var/lib/calisim-lab-file")
    done = calisim("exec", "--lab", LAB, "host1", "--", "sh", "-c",
                   "mkdir -p /etc/calisim-lab/nested && " + " && ".join(f"echo lab > /{path}" for path in written))
    assert done.returncode == 0, done.stderr
    for path in written:
        assert calisim("exec", "--lab", LAB, "host1", "--", "cat", f"/{path}").stdout == "lab\n"
        assert calisim("exec", "--lab", LAB, "host2", "--", "test", "-e", f"/{path}").returncode == 1
        assert not Path("/", path).exists(), f"/{path} reached the machine"
        top, rest = path.split("/", 1) if path.startswith("etc/") else ("var-lib", path[len("var/lib/"):])
        assert (Path(duo.run_dir) / "hosts" / "host1" / "overlay" / top / "upper" / rest).read_text() == "lab\n"


@pytest.mark.emulation
def test_exec_into_a_missing_lab_or_host_is_one_line_and_exit_2(duo):
    for args, message in ((["--lab", "nope", "host1"], "no lab named 'nope' is running"),
                          (["--lab", LAB, "host9", "--", "true"], "unknown host 'host9'"),
                          ([LAB, "host1"], f"{LAB!r} is a lab, not a host: calisim exec --lab {LAB} HOST")):
        done = calisim("exec", *args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.emulation
def test_exec_under_a_pseudo_terminal_gets_a_tty_and_a_login_shell(duo):
    command = f"stty rows 33 cols 101; {PYTHON} -m calisim exec --lab {LAB} host1"
    done = subprocess.run(["script", "-qec", command, "/dev/null"], input="tty; stty size; which calicoctl; exit 7\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 7, done.stdout + done.stderr
    assert "root@host1:~#" in done.stdout  # the prompt names the host
    assert "/dev/pts/" in done.stdout and "not a tty" not in done.stdout
    assert "33 101" in done.stdout  # the terminal's size is the caller's
    assert str(Path(duo.run_dir) / "bin" / "calicoctl") in done.stdout  # the login shell keeps calisim's PATH


@pytest.mark.emulation
def test_run_on_the_lab_replays_a_transcript(duo, tmp_path):
    script = tmp_path / "steps.txt"
    script.write_text("host1$ calicoctl get node\nwithin 10s host2$ calicoctl node status | grep -q Established\n"
                      "host2! false\n")
    done = calisim("run", str(script), "--lab", LAB, "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [(r["host"], r["rc"], r["passed"]) for r in results] == [("host1", 0, True), ("host2", 0, True), ("host2", 1, True)]
    assert results[0]["stdout"].split() == ["NAME", "host1", "host2"]
    assert "transcript: 3 passed, 0 failed" in done.stderr
    script.write_text("host1$ false\nhost1$ true\n")
    done = calisim("run", str(script), "--lab", LAB)
    assert done.returncode == 1 and "transcript: 0 passed, 1 failed, 1 not run" in done.stderr


@pytest.mark.emulation
def test_inspect_json_names_every_host_with_its_sessions(duo):
    done = calisim("inspect", LAB, "--json")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    hosts = {h["name"]: h for h in state["hosts"]}
    assert sorted(hosts) == ["host1", "host2"]
    assert hosts["host1"]["role"] == "calico host, etcd" and hosts["host1"]["calico_node"] is True
    assert [(s["peer"], s["state"]) for s in hosts["host1"]["bgp"]] == [("192.168.3.228", "Established")]
    assert [(s["peer"], s["state"]) for s in hosts["host2"]["bgp"]] == [("192.168.3.229", "Established")]
    # IPv4 then IPv6 (link-local fe80:: ones left out)
    assert hosts["host2"]["interfaces"] == {"host2-eth0": ["192.168.3.228/24", "fd00:3::228/64"],
                                            "docker0": ["172.17.0.1/16"]}
    assert state["segments"] == [{"name": "s1", "joins": ["host1", "host2"]}]
    text = calisim("inspect").stdout
    assert "1/1 Established" in text and "s1        host1, host2" in text


@pytest.mark.emulation
def test_graph_writes_svg_and_png_naming_every_host(duo, tmp_path):
    for name in ("lab.svg", "lab.png"):
        done = calisim("graph", LAB, "-o", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
    svg = (tmp_path / "lab.svg").read_text()
    assert all(f">{name}<" in svg for name in ("host1", "host2", "s1"))
    assert "BGP Established" in svg
    assert (tmp_path / "lab.png").read_bytes().startswith(b"\x89PNG") and (tmp_path / "lab.png").stat().st_size > 5000
    done = calisim("graph", "--topology", "routed", "-o", str(tmp_path / "routed.svg"))
    assert done.returncode == 0, done.stderr
    assert all(f">{name}<" in (tmp_path / "routed.svg").read_text() for name in ("host1", "host2", "r1", "ext1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.png", "lab.svg", "routed.svg"]


@pytest.mark.emulation
def test_faults_on_the_lab_from_the_command_line_and_from_lab_steps(duo, tmp_path):
    """`calisim fault --lab` and a transcript's `lab$` steps break the lab's underlay and mend it;
    bad input is one line and exit 2 with nothing changed; inspect lists the faults in force."""
    for bad, says in ((["loss", "host2", "s1", "150"], "between 0 and 100"),
                      (["rate", "host2", "s1", "fast"], "malformed rate"),
                      (["link", "host9", "s1", "down"], "host9"),
                      (["kill", "host2", "sshd"], "sshd")):
        done = calisim("fault", "--lab", LAB, *bad)
        assert done.returncode == 2 and says in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert json.loads(calisim("inspect", "--json").stdout)["faults"] == []
    done = calisim("fault", "--lab", LAB, "link", "host2", "s1", "down")
    assert done.returncode == 0, done.stderr
    state = json.loads(calisim("inspect", "--json").stdout)
    assert [f for f in state["faults"] if "host2" in json.dumps(f)], state["faults"]
    assert calisim("exec", "--lab", LAB, "host1", "--", "ping", "-c1", "-W1", "192.168.3.228").returncode != 0
    script = tmp_path / "heal.txt"
    script.write_text("lab$ calisim fault link host2 s1 up\n"
                      "within 20s host1$ ping -c1 -W1 192.168.3.228\n"
                      "lab! calisim fault heal host2\n"
                      'lab$ test -z "$(calisim fault list)"\n')
    done = calisim("run", str(script), "--lab", LAB)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (Path(duo.run_dir) / "faults.log").read_text().count("link host2 s1") >= 2


@pytest.mark.emulation
def test_two_labs_side_by_side(duo, labs):
    done = calisim("up", "flat", "--hosts", "2", "--name", "second")
    assert done.returncode == 0, done.stderr
    try:
        assert {LAB, "second"} <= set(ls_names())
        assert calisim("exec", "--lab", "second", "host2", "--", "hostname").stdout == "host2\n"
        assert calisim("exec", "--lab", "second", "host1", "--", "ip", "-4", "-br", "addr", "show", "host1-eth0").stdout.split()[2] == "172.16.0.1/16"
        ambiguous = calisim("exec", "host1", "--", "true")
        assert ambiguous.returncode == 2 and "choose one with --lab" in ambiguous.stderr
        again = calisim("up", "flat", "--name", "second")
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        assert calisim("down", "second").returncode == 0
    assert "second" not in ls_names() and LAB in ls_names()


@pytest.mark.emulation
def test_a_sigkilled_lab_is_cleaned_by_the_next_ls(duo, labs):
    assert calisim("up", "two_host", "--name", "doomed").returncode == 0
    record = labs.find("doomed")
    os.kill(record.pid, 9)
    names = ls_names()
    assert "doomed" not in names and LAB in names
    assert in_pid_namespace(record.pidns) == [] and not process_alive(record.pid)
    assert not (labs.path / "doomed.json").exists() and not record.socket.exists()


@pytest.mark.emulation
def test_down_stops_everything_and_leaves_the_caller_untouched(duo, labs, untouched):
    assert calisim("up", "routed", "--name", "brief").returncode == 0
    record = labs.find("brief")
    assert in_pid_namespace(record.pidns)
    done = calisim("down", "brief")
    assert done.returncode == 0 and "lab brief is down" in done.stdout, done.stderr
    assert "brief" not in ls_names()
    assert in_pid_namespace(record.pidns) == [] and not process_alive(record.pid)
    assert record.run_dir not in Path("/proc/self/mountinfo").read_text()
    assert (Path(record.run_dir) / "calisim.log").is_file() and not record.socket.exists()


@pytest.mark.emulation
def test_exec_and_inspect_reach_a_host_on_another_server(labs, untouched):
    """A lab spread over simulated servers: `exec` runs over host2's server's ssh, `inspect` reads
    its calico-node and its dockerd's containers there (not by a path of this machine)."""
    done = calisim("up", "two_host", "--start-nodes", "--name", "spread", "--servers", "sim:2")
    assert done.returncode == 0, done.stdout + done.stderr
    record = labs.find("spread")
    try:
        for command in ("docker network create --driver calico --ipam-driver calico-ipam net1",
                        "docker run -d --net net1 --name w1 busybox sleep 600"):
            assert calisim("exec", "--lab", "spread", "host2", "--", *command.split()).returncode == 0, command
        listed = calisim("exec", "--lab", "spread", "host2", "--", "sh", "-c", "hostname; docker ps --format {{.Names}}")
        assert (listed.returncode, listed.stdout) == (0, "host2\nw1\n"), listed.stderr
        hosts = {h["name"]: h for h in json.loads(calisim("inspect", "spread", "--json").stdout)["hosts"]}
        assert (hosts["host2"]["server"], hosts["host2"]["calico_node"]) == ("server2", True)
        assert [w["name"] for w in hosts["host2"]["workloads"]] == ["w1"]
    finally:
        assert calisim("down", "spread").returncode == 0
    assert in_pid_namespace(record.pidns) == [] and not process_alive(record.pid)


@pytest.mark.emulation
def test_down_all_leaves_ls_empty(duo, labs):
    done = calisim("down", "--all")
    assert done.returncode == 0 and f"lab {LAB} is down" in done.stdout, done.stderr
    assert ls_names() == []
    assert in_pid_namespace(duo.pidns) == []
    gone = calisim("exec", "host1", "--", "true")
    assert gone.returncode == 2 and gone.stderr.strip() == "calisim: no lab is running (start one with `calisim up TOPOLOGY`)"


@pytest.mark.emulation
def test_mininet_cli_shows_each_commands_output(runs):
    """An empty transcript with --cli: a fresh cluster to explore."""
    done = calisim("run", "/dev/null", "--topology", "two_host", "--cli",
                   input="host1 hostname\nhost2 echo $ETCD_ENDPOINTS\nnodes\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "host1" in lines and "http://192.168.3.229:2379" in lines
    assert "host1 host2 s1" in lines  # `nodes`


def record(name: str, pid: int, pidns: int, run_dir) -> lab.LabRecord:
    return lab.LabRecord(name, "two_host", {}, [], 0.0, str(run_dir), pid, pidns)


def test_the_registry_keeps_live_labs_and_forgets_dead_ones(tmp_path):
    registry = lab.Registry(tmp_path / "labs")
    live = record("live", os.getpid(), os.stat("/proc/self/ns/pid").st_ino, tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = record("dead", child.pid, os.stat("/proc/self/ns/pid").st_ino, tmp_path)
    reused = record("reused", os.getpid(), 1, tmp_path)  # a live PID, but not the lab's PID namespace
    for each in (live, dead, reused):
        registry.add(each)
    assert oct(os.stat(registry.path).st_mode & 0o777) == "0o700"
    assert oct(os.stat(registry.path / "live.json").st_mode & 0o777) == "0o600"
    assert [r.name for r in registry.running()] == ["live"]
    assert sorted(p.name for p in registry.path.iterdir()) == ["live.json"]
    assert registry.find(None) == live
    with pytest.raises(lab.LabError, match="no lab named 'dead' is running \\(running: live\\)"):
        registry.find("dead")
    registry.remove("live")
    with pytest.raises(lab.LabError, match="no lab is running"):
        registry.find(None)


def test_the_control_protocol_names_its_operations():
    service = lab.LabService(cluster=None, spec=lab.LabSpec("x", "two_host"), run_fault=run_command)
    answer = service.handle({"op": "reboot"})
    assert answer == {"ok": False, "error": "unknown operation (known: describe, diagnose, enter, fault, inspect, locate, run, save, stop)"}
    assert service.handle({"op": "stop"}) == {"ok": True, "result": "stopping"} and service.stopping.is_set()
    assert service.handle({"op": "stop", "bogus": 1})["ok"] is False  # a bad argument is an error, not a crash



def test_up_hears_the_labs_progress_then_its_status(tmp_path):
    """The lab's status pipe: progress lines as it starts (shown by `up` on a terminal), then one
    status; a lab that dies before its status is reported as dead, not as ready."""
    heard = []
    read, write = os.pipe()
    for status in ({"progress": "hosts built", "done": 3, "total": 3}, {"progress": "nodes started", "done": 1,
                                                                        "total": 3}, {"ok": True, "hosts": []}):
        assert lab._report(write, status)
    assert lab._read_status(read, tmp_path, lambda *stage: heard.append(stage)) == {"ok": True, "hosts": []}
    assert heard == [("hosts built", 3, 3), ("nodes started", 1, 3)]
    lab._report(write, {"progress": "hosts built", "done": 1, "total": 3})
    os.close(write)
    with pytest.raises(lab.LabError, match="the lab died while starting"):
        lab._read_status(read, tmp_path, lambda *stage: None)
    os.close(read)
