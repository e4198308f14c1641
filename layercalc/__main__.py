"""`python -m layercalc`."""

from .launch import main

main()
