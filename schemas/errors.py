"""Errors a user can act on.

Their message is one line that names the file, folder or option at fault and says what to do.
The command line catches :class:`UserError` once, prints ``voxmesh VERB: message`` and exits 2;
any other exception is a bug and keeps its traceback. The subclasses also derive from the
built-in exception of their kind, so that library callers can catch either.
"""


class UserError(Exception):
    """An error the user can fix: bad input, options, files or dataset state."""


class ConfigError(UserError, ValueError):
    """An option, config value or argument that cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the command needs is not there (or not what the command expects)."""


class DatasetStateError(UserError, RuntimeError):
    """A dataset folder in a state that needs an action first (``--resume``, ``voxmesh validate``)."""


class SampleNotFound(UserError, LookupError):
    """A sample key that a dataset does not hold."""
