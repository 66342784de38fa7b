"""calisim: Project Calico's Docker-era container networking, emulated on one Linux machine.

Real parts wherever a real part exists: Mininet network namespaces, BIRD speaking BGP,
etcd as the datastore, the kernel's dataplane.  See README.md for the tour.
"""

__version__ = "0.1.0"
