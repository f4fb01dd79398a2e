"""``python -m conclave.cli``: the same as the ``conclave`` command."""

from conclave.cli import main

main()
