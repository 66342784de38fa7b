"""Processes, the lowest layer: finding and stopping them by PID (pids.py) and the one shape every
daemon of the emulation has (daemon.py); the
termination signals that unwind a run (signals.py).  Imports nothing of calisim."""
