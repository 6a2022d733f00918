"""The error type for mistakes a user can fix (bad config, missing files, wrong checkpoints).

Command-line entry points catch :class:`UserError`, print its message (which names the file,
key or value and says how to fix it) and exit with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and how to fix it."""
