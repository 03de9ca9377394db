"""User-facing errors: one clear line, no traceback, for mistakes a user can fix."""


class WaferlineError(Exception):
    """An error whose message is meant for the user as is."""


class GGUFError(WaferlineError):
    """The file is not a GGUF we can convert (bad magic, truncated, unsupported architecture or quant type...)."""


class ModelError(WaferlineError):
    """A model bundle is missing, incomplete or broken."""
