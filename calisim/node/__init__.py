"""calico/node: startup and registration (startup.py), confd (confd.py: watch, render, check,
reload), BIRD's config, control socket and daemon (bird/), the process that runs them with
Felix and the libnetwork plugins (agent.py, `python -m calisim.node`), how `calicoctl node run`
starts and stops it (daemon.py), the route reflector (routereflector.py), the zygote that forks
them (zygote.py, its clients zygote_client.py and, as the hosts' calicoctl, calicoctl.c), and
where a node keeps its files (paths.py).

Light on purpose: `calicoctl node` imports ``NodePaths`` on every start.
"""

from .paths import NodePaths

__all__ = ["NodePaths"]
