"""What the chaos tests share: a datastore stand-in holding values as IPAM and the plugin store them."""

import ipaddress

from calisim.datastore import keys
from calisim.datastore.resources.ipam import AllocationBlock


class Entry:
    def __init__(self, key, value):
        self.key, self.value = key, value


class Store:
    """Stands in for a datastore client: list(prefix) over a dict."""

    def __init__(self, values):
        self.values = values

    def list(self, prefix):
        return [Entry(key, value) for key, value in sorted(self.values.items()) if key.startswith(prefix)]


def block(cidr, host, handles):
    made = AllocationBlock.new(ipaddress.ip_network(cidr), host)
    for ordinal, handle in enumerate(handles):
        made.allocations[ordinal] = ordinal
        made.attributes.append({"handle_id": handle, "secondary": None})
        made.unallocated.remove(ordinal)
    return made


def endpoint(address):
    return {"state": "active", "name": "cali1", "mac": "ee:ee:ee:ee:ee:ee", "profile_ids": ["net"],
            "ipv4_nets": [f"{address}/32"], "ipv6_nets": []}


def store(*blocks, affinities=(), endpoints=()):
    values = {keys.block(b.cidr): b.to_value() for b in blocks}
    values |= {keys.affinity(host, ipaddress.ip_network(cidr)): {"state": "confirmed"}
               for host, cidr in affinities}
    values |= {keys.workload_endpoint(host, "libnetwork", name, "ep"): endpoint(address)
               for host, name, address in endpoints}
    return Store(values)
