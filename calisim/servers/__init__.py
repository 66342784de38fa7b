"""Servers a lab is spread over: simulated ones (``sim:N``) built inside the run's sandbox,
each a machine of its own to the lab (network, mount, UTS and PID namespaces, its own sshd)."""
