"""The one exception type for bad user input."""


class UserError(Exception):
    """A problem with the user's input or files, its message saying what to do instead: the CLI prints it
    without a traceback and exits 2."""
