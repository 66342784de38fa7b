"""The datastore: a real etcd holding Calico v1's key layout, and what calisim keeps in it.

* etcd.py: the etcd client (``Datastore``, asyncio over aetcd; ``Synchronous``, its blocking
  face), transactions, and how etcd is started (``EtcdServer``, ``local_etcd``);
* keys.py: Calico v1's key layout, the contract between every component;
* resources/: calicoctl v1's resources (validation, v1 YAML/JSON form, their keys);
* selector.py: Calico's label-selector language, shared by validation and Felix's policy.
"""

from .etcd import Datastore, DatastoreError, EtcdServer, Synchronous, Txn, local_etcd, next_pass

__all__ = ["Datastore", "DatastoreError", "EtcdServer", "Synchronous", "Txn", "local_etcd", "next_pass"]
