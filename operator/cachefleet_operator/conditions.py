"""Status conditions whose lastTransitionTime moves only when their status does.

Otherwise every resync would write a new timestamp, and an idle cluster would never be idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from cachefleet_operator.api import Condition
from cachefleet_operator.clock import rfc3339

ConditionType = Literal["Ready", "Progressing", "Degraded"]


def condition(
    type_: ConditionType,
    status: bool,
    reason: str,
    message: str,
    live: Sequence[Condition],
    now: datetime,
) -> Condition:
    value: Literal["True", "False"] = "True" if status else "False"
    previous = next((c for c in live if c.type == type_), None)
    since = (
        previous.last_transition_time
        if previous is not None and previous.status == value
        else rfc3339(now)
    )
    return Condition(
        type=type_, status=value, reason=reason, message=message, last_transition_time=since
    )


def find(conditions: Sequence[Condition], type_: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
