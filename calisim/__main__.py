"""`python -m calisim`: the command line (cli.py)."""

from .cli import main

main()
