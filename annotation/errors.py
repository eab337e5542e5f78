"""The one error type the CLI reports as a plain message (no traceback): bad input or setup."""


class AnnotationError(Exception):
    """A problem the user can fix; the message names the file, record or server and what to do."""
