"""Errors a user can act on.

Their message is one line that names the file, folder or option at fault and says what to do.
The command line catches :class:`UserError` once, prints ``voxmesh VERB: message`` and exits 2;
any other exception is a bug and keeps its traceback. The subclasses also derive from the
built-in exception of their kind, so that library callers can catch either.
"""

import re
import sys


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


# The last line of a traceback: the exception's module and class, and its message (Beam appends the
# transform it was running).
_RAISED = re.compile(r"(\w+(?:\.\w+)*)\.(\w+): (.+?)(?: \[while running '[^']*'\])?")


def raised_user_error(line: str) -> str | None:
    """The message of ``line`` when it is a traceback's last line for a :class:`UserError`
    (voxmesh's, or a subclass in another loaded module such as a backend's package): ``module.Class:
    message``. None for any other line. Beam hands a worker's exception on as text; this is how the
    command tells a user's error from a bug in it."""
    match = _RAISED.fullmatch(line.strip())
    raised = getattr(sys.modules.get(match.group(1)), match.group(2), None) if match else None
    return match.group(3) if match and isinstance(raised, type) and issubclass(raised, UserError) else None
