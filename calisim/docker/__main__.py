"""`python -m calisim.docker`: the emulated dockerd (the cluster starts one per host)."""

import os

# The embedded DNS server's etcd watch keeps a thread in gRPC, and the daemon forks (pyroute2
# enters each container's namespace in a forked child that never uses gRPC): without this, gRPC's
# fork handlers log "Other threads are currently calling into gRPC, skipping fork() handlers" at
# every container start.  Read by gRPC when it is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from .daemon import main  # noqa: E402

main()
