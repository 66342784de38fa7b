"""Calico's libnetwork plugins, served by calico-node in each host's /run/docker/plugins:
the network driver `calico` (driver.py) and the IPAM driver `calico-ipam` (ipam_driver.py), over
Docker's plugin protocol (protocol.py).  dockerd's side of the same protocol is calisim.docker.
"""

from .driver import DOCKER_NETWORKS, NetworkDriver, endpoint_key
from .ipam_driver import IpamDriver
from .protocol import CONTENT_TYPE, PluginError, PluginServer, call_plugin

__all__ = ["CONTENT_TYPE", "DOCKER_NETWORKS", "IpamDriver", "NetworkDriver", "PluginError", "PluginServer",
           "call_plugin", "endpoint_key"]
