"""The simulator's one-line user errors."""

from runtime.errors import WaferlineError


class WaferError(WaferlineError):
    """Bad hardware description, unknown architecture, or a model that does not fit: one line, for the user."""
