"""``python -m clew`` is ``clew``."""

from clew.cli.main import main

main()
