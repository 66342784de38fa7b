"""`python -m calisim.node`: calico-node's own command line (calicoctl node run starts it)."""

from .agent import main

main()
