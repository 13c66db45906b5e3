"""``python -m gemmconv compare``: the same as the ``gemmconv`` command."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
