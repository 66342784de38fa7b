"""`python -m calisim`: the command line (calisim/cli/)."""

from .cli import main

main()
