"""`python -m refurbgrade` runs the console script."""

from refurbgrade.cli import main

main()
