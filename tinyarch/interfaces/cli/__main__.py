"""`python -m tinyarch.interfaces.cli`."""

from tinyarch.interfaces.cli import main

main()
