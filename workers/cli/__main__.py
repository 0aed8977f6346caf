"""`python -m workers.cli` runs the `drip` command."""

from workers.cli import main

main()
