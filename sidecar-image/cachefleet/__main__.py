"""``python -m cachefleet`` is the ``cachefleet`` command."""

import sys

from cachefleet.cli import main

sys.exit(main())
