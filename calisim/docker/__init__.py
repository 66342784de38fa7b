"""Docker's side of the CNM flow, emulated: a dockerd per host (daemon.py, `python -m
calisim.docker`) serving the Docker Engine API to the real docker CLI and SDK, and libnetwork's
part of it (cnm.py: networks in the cluster store, endpoints moved into containers), which
reaches Calico's plugins only over their sockets.
"""
