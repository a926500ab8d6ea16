"""The one error the ring raises: its message names what was wrong with the input."""


class RingError(ValueError):
    """Invalid ring input: duplicate shards, bad weights, absurd token counts and the like."""
