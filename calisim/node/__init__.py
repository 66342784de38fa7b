"""calico/node: startup and registration (startup.py), confd (confd.py: watch, render, check,
reload), the BIRD model, template and control socket (bird.py), the process that runs them with
Felix and the libnetwork plugins (agent.py, `python -m calisim.node`), and where it keeps its
files (paths.py).

Light on purpose: `calicoctl node` imports ``NodePaths`` on every start.
"""

from .paths import NodePaths

__all__ = ["NodePaths"]
