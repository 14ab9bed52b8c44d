"""The bench's own error: what a user must change before a run can start."""


class MixError(ValueError):
    """A mix, class or load shape that cannot run; the message says what to change."""
