"""The one base class for errors a user can fix; the CLI prints their message, not a traceback."""


class CatdogError(Exception):
    """Bad params, bad data or a bad request: the message says what is wrong and what to do."""
