"""The emulation: everything that stands in for the machines and the wires.

* sandbox.py: the private network/mount/PID namespaces every run lives in;
* topology.py: Mininet's hosts, segments and routers, as Calico hosts need them;
* overlay.py: each host's copy-on-write /etc and /var/lib, and the check that a run can have them;
* cluster.py: ``Cluster``, the Python API (build, run commands in hosts, stop);
* rundir.py: the per-run directory of configs, sockets and logs.
* lab.py: labs, clusters kept running in sandboxes of their own, their registry and control socket;
* snapshot.py: a lab saved to a file (topology, etcd snapshot, containers) and brought back;
* state.py: what a topology is and a running cluster looks like (`calisim inspect`);
* graph.py: Graphviz pictures of topologies and labs.

``from calisim.emulation import Cluster`` works without importing Mininet and etcd's client
until they are used, so `python -m calisim --help` and the sandbox's PID 1 stay light.
"""

import importlib.util
import sys
from importlib import import_module

_EXPORTS = {"Cluster": "cluster", "ClusterError": "cluster", "CommandResult": "cluster", "wait_until": "cluster",
            "RunDir": "rundir"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _prefer_stdlib_distutils() -> None:
    """Mininet's node module imports distutils.version (for Open vSwitch's version, unused here).
    In a venv, setuptools' distutils shim answers that import by importing all of setuptools and
    pkg_resources: 0.5-0.9 s of CPU in every process that loads a topology (the CLI pays it twice,
    before and inside its sandbox).  The standard library's distutils, where there is one (Python
    3.11 and older), has the same StrictVersion and imports in milliseconds."""
    shim = sys.modules.get("_distutils_hack")
    if shim is None or "distutils" in sys.modules:
        return
    shim.remove_shim()
    if importlib.util.find_spec("distutils") is None:
        shim.add_shim()


_prefer_stdlib_distutils()
