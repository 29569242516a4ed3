"""The one error class users meet: a problem with their input or data, said in one line.

keras_ganaug.cli_helpers.run_cli turns it into exit code 2 (0 success, 1 a bug with its traceback).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or data: said in one line, exit code 2."""
