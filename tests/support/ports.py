"""Free TCP ports on 127.0.0.1.

The kernel picks an unused port; we remember every port handed out in this process so two
servers started back to back never get the same one before either has bound it.
"""

from __future__ import annotations

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port on 127.0.0.1 after 100 tries")
