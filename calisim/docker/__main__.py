"""`python -m calisim.docker`: the emulated dockerd (the cluster starts one per host)."""

from .api import main

main()
