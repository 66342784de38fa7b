"""calisim.process.pids on real processes (no root needed)."""

import signal
import subprocess
import sys
import time

from calisim.process import pids

IGNORES_TERM = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]


def test_a_zombie_counts_as_gone():
    process = subprocess.Popen(["true"])
    assert pids.wait_gone(process.pid, timeout=5)  # exited, not yet reaped
    assert not pids.alive(process.pid)
    process.wait()


def test_stop_kills_what_ignores_term_after_the_deadline():
    stubborn = subprocess.Popen(IGNORES_TERM, stdout=subprocess.PIPE, text=True)
    polite = subprocess.Popen(["sleep", "60"])
    assert stubborn.stdout.readline() == "ready\n"
    started = time.monotonic()
    assert pids.stop([stubborn.pid, polite.pid], timeout=0.5) == [stubborn.pid]
    assert time.monotonic() - started < 5
    assert stubborn.wait(5) == -signal.SIGKILL and polite.wait(5) == -signal.SIGTERM


def test_a_stopped_process_is_continued_to_act_on_term():
    frozen = subprocess.Popen(["sleep", "60"])
    frozen.send_signal(signal.SIGSTOP)
    assert pids.stop([frozen.pid], timeout=5) == []
    assert frozen.wait(5) == -signal.SIGTERM


def test_descendants_and_pid_files(tmp_path):
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert pids.descendants({parent.pid}) >= {parent.pid, child}
        (tmp_path / "x.pid").write_text(f"{child}\n")
        assert pids.from_file(tmp_path / "x.pid") == child
        assert pids.from_file(tmp_path / "none.pid") is None
    finally:
        pids.stop([child, parent.pid], timeout=5)
        parent.wait(5)
    assert pids.from_file(tmp_path / "x.pid") is None


def test_a_frozen_daemon_is_stopped_by_its_sigterm_not_the_kill_after_the_timeout():
    """`fault stop HOST etcd` then Cluster.stop: a daemon that handles SIGTERM (etcd does) acts on
    it only once it runs again; SIGKILL after the timeout would be the only way out otherwise."""
    daemon = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                               "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
                               "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout.readline() == "ready\n"
    daemon.send_signal(signal.SIGSTOP)
    pids.stop([daemon.pid], timeout=30)
    assert daemon.wait(5) == 3  # its own handler ran: not -SIGKILL


def test_waiting_for_many_returns_as_the_last_goes_and_names_those_left_at_the_deadline():
    quick = subprocess.Popen(["sleep", "0.2"])
    slow = subprocess.Popen(["sleep", "30"])
    try:
        started = time.monotonic()
        assert pids.wait_all_gone([quick.pid], time.monotonic() + 10) == []
        assert time.monotonic() - started < 5  # woken by the exit, not by the deadline
        assert pids.wait_all_gone([quick.pid, slow.pid, 2 ** 22 + 1], time.monotonic() + 0.2) == [slow.pid]
    finally:
        slow.kill()
        slow.wait()
        quick.wait()
