"""User-facing errors.

Anything a user can cause (bad input, a missing file, an impossible option) raises
:class:`IronError` with a message that says what is wrong and what to do. The CLI prints it on
one line and exits non-zero; a traceback means a bug in ironrender.
"""


class IronError(Exception):
    """An error caused by the input or the environment, with a one-line message for the user."""


class DatasetError(IronError):
    """The dataset is missing, unreadable or inconsistent."""
