"""The base of every error that is the user's to fix (bad input, config, setup).

The command line prints these as one clear line instead of a traceback.
"""


class SwiftError(Exception):
    pass


USER_ERRORS = (SwiftError,)
