"""Errors a user can act on: one sentence, exit status 2, no traceback."""

import functools
import sys


class UserError(Exception):
    """Something the user can fix (a path, a flag, a missing file); the message says what to do."""


def exit_on_user_error(main):
    """Wrap a command's `main` so a `UserError` prints its sentence and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
