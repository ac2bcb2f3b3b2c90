"""``python -m ibin``: the command line (same as the ``ibin`` script)."""

import sys

from .cli import main

sys.exit(main())
