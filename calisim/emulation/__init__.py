"""The emulation: everything that stands in for the machines and the wires.

* sandbox.py: the private network/mount/PID namespaces every run lives in;
* topology.py: Mininet's hosts, segments and routers, as Calico hosts need them;
* cluster.py: ``Cluster``, the Python API (build, run commands in hosts, stop);
* rundir.py: the per-run directory of configs, sockets and logs.
* lab.py: labs, clusters kept running in sandboxes of their own, their registry and control socket;
* state.py: what a topology is and a running cluster looks like (`calisim inspect`);
* graph.py: Graphviz pictures of topologies and labs.

``from calisim.emulation import Cluster`` works without importing Mininet and etcd's client
until they are used, so `python -m calisim --help` and the sandbox's PID 1 stay light.
"""

from importlib import import_module

_EXPORTS = {"Cluster": "cluster", "ClusterError": "cluster", "CommandResult": "cluster", "wait_until": "cluster",
            "RunDir": "rundir"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
