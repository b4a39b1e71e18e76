"""The one error type genrl raises for bad input, so callers (and the CLI) can catch it."""


class GenrlError(ValueError):
    """Bad input at a genrl boundary. The message says what was expected and what was given."""
