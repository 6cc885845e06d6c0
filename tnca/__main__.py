"""``python -m tnca``: the same command line as the ``tnca`` console script."""

from tnca.cli import main

main()
