"""`python -m calisim.docker`: the emulated dockerd (the cluster starts one per host)."""

import os

# The embedded DNS server's etcd watch keeps a thread in gRPC, and the daemon's children (each
# container's init, services and execs) never use gRPC: where starting one forks, gRPC's fork
# handlers would log "Other threads are currently calling into gRPC, skipping fork() handlers".
# Read by gRPC when it is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from .api import main  # noqa: E402

main()
