"""Felix, the dataplane: the desired state computed from etcd, applied to the kernel.

* agent.py: ``Felix``, the agent calico-node runs, one loop per part below;
* endpoints.py: workload endpoints (proxy ARP, /32 routes, permanent ARP entries);
* ipip.py, bpf/: tunl0's IPIP backends (kernel, eBPF tc programs, userspace);
* vxlan.py: vxlan.calico for VXLAN pools;
* policy.py: profiles, selector policies and nat-outgoing in one nftables table;
* ruleset.py: that table kept in the kernel by deltas (libnftables in-process), rewritten on a timer.
"""

from .agent import Felix

__all__ = ["Felix"]
