"""Stopping a process by PID with a deadline: SIGTERM, a wait, then SIGKILL."""

import os


def test_a_frozen_daemon_is_stopped_by_its_sigterm_not_the_kill_after_the_timeout():
    """`fault stop HOST etcd` then Cluster.stop: a daemon that handles SIGTERM (etcd does) acts on
    it only once it runs again; SIGKILL after the timeout would be the only way out otherwise."""
    import signal
    import subprocess
    import sys

    from calisim.emulation.cluster import _terminate

    daemon = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                               "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
                               "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout.readline() == "ready\n"
    os.kill(daemon.pid, signal.SIGSTOP)
    _terminate([daemon.pid], timeout=30)
    assert daemon.wait(5) == 3  # its own handler ran: not -SIGKILL

