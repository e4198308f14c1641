"""`python -m layercalc`."""

from .cli import main

main()
