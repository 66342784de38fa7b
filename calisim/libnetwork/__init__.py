"""Calico's libnetwork plugins, served by calico-node in each host's /run/docker/plugins:
the network driver `calico` (driver.py) and the IPAM driver `calico-ipam` (ipam_driver.py), over
Docker's plugin protocol (protocol.py).  dockerd's side of the same protocol is calisim.docker.
"""

from .driver import ADDRESS_SPACE, GATEWAY, NetworkDriver, endpoint_key
from .ipam_driver import IpamDriver
from .protocol import CONTENT_TYPE, PluginError, PluginServer, call_plugin

__all__ = ["ADDRESS_SPACE", "CONTENT_TYPE", "GATEWAY", "IpamDriver", "NetworkDriver", "PluginError", "PluginServer",
           "call_plugin", "endpoint_key"]
