"""The error type for mistakes a user can fix (bad config, missing files, wrong checkpoints).

Command-line entry points catch :class:`UserError`, print its message (which names the file,
key or value and says how to fix it) and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable

__all__ = ["UserError", "run_cli", "user_message"]

# torch re-raises an exception of a DataLoader worker (or of the pin-memory thread) in the main
# process as ``type(e)("Caught <Type> in DataLoader worker process <n>.\nOriginal Traceback
# (most recent call last): ...")``; the original message ends that traceback.
_WRAPPED = re.compile(r"\ACaught \w+ in (DataLoader worker process \d+|pin memory thread[^.]*)\."
                      r"\nOriginal Traceback")
_LAST_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*UserError: ", re.MULTILINE)


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and how to fix it."""


def user_message(err: BaseException) -> str:
    """The message of a :class:`UserError` as its author wrote it.

    A UserError raised inside a DataLoader worker reaches the main process re-wrapped by torch,
    with the worker's traceback inside the message; this returns only the original message.

    Args:
        err: the caught exception.

    Returns:
        The message without torch's wrapper and traceback (unchanged when not wrapped).

    Example:
        >>> user_message(UserError("Cannot read image 'a.jpg'. Fix: restore it."))
        "Cannot read image 'a.jpg'. Fix: restore it."
    """
    msg = str(err)
    if not _WRAPPED.match(msg):
        return msg
    ends = [m.end() for m in _LAST_LINE.finditer(msg)]
    return msg[ends[-1]:].rstrip("\n") if ends else msg


def run_cli(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a command's ``main`` so that a :class:`UserError` prints its message and exits 2.

    The message is printed as ``error: <message>`` on stderr, without a traceback; one raised
    in a DataLoader worker is shown without torch's wrapper (see
    :func:`utils.errors.user_message`). The traceback goes to the log at debug level.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except UserError as e:
            logging.getLogger("reid").debug("user error", exc_info=True)
            print(f"error: {user_message(e)}", file=sys.stderr)
            return 2

    return wrapper
