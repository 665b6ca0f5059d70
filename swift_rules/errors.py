"""The base of every error that is the user's to fix (bad input, config, setup).

The command line prints these as one clear line instead of a traceback, and so do
IPython and Jupyter (``_render_traceback_``).
"""


class SwiftError(Exception):
    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


USER_ERRORS = (SwiftError,)
