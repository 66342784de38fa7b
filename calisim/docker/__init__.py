"""Docker's side of the CNM flow, emulated: a dockerd per host (`python -m calisim.docker`)
serving the Docker Engine API to the real docker CLI and SDK (api.py, streams.py) over its
container store and life cycle (daemon.py, containers.py; runtime.py, the C init cinit/cinit.c
and images.py run the containers), Docker's embedded DNS server (resolver.py), and libnetwork's part of it (cnm.py:
networks and endpoints in the cluster store, networks.py; netns.py moves the plugins' interfaces
into containers), which reaches Calico's plugins only over their sockets.
"""
