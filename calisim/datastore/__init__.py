"""The datastore: a real etcd holding Calico v1's key layout, and what calisim keeps in it.

* etcd.py: the etcd client (``Datastore``, asyncio over aetcd; ``Synchronous``, its blocking
  face), transactions, and how etcd is started (``EtcdServer``, ``local_etcd``);
* mirror.py: a process's copy of the keys, followed by a watch (``Mirror``), and its agents' ``View``s;
* keys.py: Calico v1's key layout and Docker's cluster-store keys, the contract between every component;
* resources/: every stored value's one decoder (``from_value``/``to_value``): calicoctl v1's resources
  (also their validation and v1 YAML/JSON form), the BGP settings, IPAM's blocks and Docker's records;
* selector.py: Calico's label-selector language, shared by validation and Felix's policy.

The etcd client (aetcd, grpc: 0.3 s of CPU) is imported when first used, so that what needs only
keys or validation (`calicoctl node run`, once per host as a cluster starts) does not pay for it.
"""

from importlib import import_module

__all__ = ["DEBOUNCE", "Datastore", "DatastoreError", "EtcdServer", "Mirror", "RESYNC", "Synchronous", "Txn", "View",
           "local_etcd", "next_pass"]


def __getattr__(name: str):
    if name in ("Mirror", "View"):
        return getattr(import_module(".mirror", __name__), name)
    if name in __all__:
        return getattr(import_module(".etcd", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
