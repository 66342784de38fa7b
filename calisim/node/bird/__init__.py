"""BIRD, the BGP speaker of every node, route reflector and fabric router: its config (config.py:
the model computed from etcd, the Jinja2 templates of bird_configs/, the `bird -p` dry run), a
client of its control socket (birdc.py) and the daemon in its three roles (daemon.py).
Modelled on IPMininet's daemons: a config model + a template + a start line + a dry-run check."""

from .birdc import BgpPeerStatus, BirdControl, BirdError, Protocol, bgp_peer_statuses, protocol_address
from .config import (GRACEFUL_RESTART_ENV, HOLD_TIME_ENV, BirdConfig, IPv6Config, Peer, Pool, ReflectorClient,
                     ReflectorConfig, ReflectorFamily, Timers, bird_config, check, compile_templates,
                     datastore_prefixes, expected_sessions, mesh_enabled, protocol_name, reflector_config,
                     reflector_prefixes, render, render_reflector, render_template, write_checked)
from .daemon import Bird

__all__ = ["GRACEFUL_RESTART_ENV", "HOLD_TIME_ENV", "BgpPeerStatus", "Bird", "BirdConfig", "BirdControl",
           "BirdError", "IPv6Config", "Peer", "Pool", "Protocol", "ReflectorClient", "ReflectorConfig",
           "ReflectorFamily", "Timers",
           "bgp_peer_statuses", "bird_config", "check", "compile_templates", "datastore_prefixes",
           "expected_sessions", "mesh_enabled", "protocol_address", "protocol_name", "reflector_config",
           "reflector_prefixes", "render", "render_reflector", "render_template", "write_checked"]
