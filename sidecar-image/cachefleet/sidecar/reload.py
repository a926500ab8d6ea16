"""Watching the config file: the mounted ConfigMap changes, the sidecar follows.

Polls about once a second (a ConfigMap update swaps a symlink, which inotify on the file itself
misses). A changed file that does not validate is logged in one line and the running config
keeps serving; a valid one is applied atomically by the sidecar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from cachefleet.config import SidecarConfig

log = logging.getLogger("cachefleet.sidecar.reload")

POLL_SECONDS = 1.0


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        apply: Callable[[SidecarConfig], None],
        rejected: Callable[[str], None],
        current_text: str | None = None,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.path = path
        self.apply = apply
        self.rejected = rejected
        self.interval = interval
        self.last_text = current_text
        self._last_rejected: str | None = None

    def check(self) -> None:
        """Read the file once; apply it when its content changed and validates."""
        try:
            text = self.path.read_text()
        except OSError as error:
            self._reject(f"\0{error}", f"cannot read {self.path}: {error}")
            return
        if text == self.last_text or text == self._last_rejected:
            return
        try:
            config = SidecarConfig.model_validate_json(text)
        except ValidationError as error:
            summary = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                for e in error.errors()[:5]
            )
            self._reject(text, f"invalid config {self.path}: {summary}")
            return
        try:
            self.apply(config)
        except Exception as error:  # a config that validates but cannot be built (ring)
            self._reject(text, f"cannot apply config {self.path}: {error}")
            return
        self.last_text = text
        self._last_rejected = None

    def _reject(self, text: str | None, reason: str) -> None:
        if text is not None and text == self._last_rejected:
            return
        self._last_rejected = text
        log.error("%s; keeping the running config", reason)
        self.rejected(reason)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
