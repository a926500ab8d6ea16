"""What every benchmark does around its ``main``: ^C and SIGTERM stop everything it started."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status. SIGTERM and SIGINT unwind like ^C, so every context manager
    stops what it started (SIGINT too: a shell starting us in the background may have set it to
    be ignored)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
