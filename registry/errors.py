"""Errors a user can cause by asking for something that cannot be built.

Every such error is a `ConfigError`: the command-line interface prints its message as one paragraph
and exits with code 2, without a traceback.
"""


class ConfigError(ValueError):
    """A request names something unknown, or a value the component cannot take."""
