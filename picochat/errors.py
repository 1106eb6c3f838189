"""The one exception type for bad user input."""


class UserError(Exception):
    """A problem with the user's input or files: the CLI prints it without a traceback and exits 2.

    The message says what was wrong, with which value, and what to do instead.
    """
