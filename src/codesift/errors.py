"""The kit's one error base: a `CodesiftError` is the user's to fix, and a script prints it as one line.

Every stage's own error class derives from it (TaskDataError, CorpusError, PretrainError, ...), so
`cli.report_errors` catches exactly these: any other exception is a bug in the kit (or a library's),
and keeps its traceback. It derives from ValueError too, so code that caught a bad value before still does.
"""

from __future__ import annotations


class CodesiftError(ValueError):
    """A bad input, recipe or output folder, said in one line: what, where (file, row, key), what to do."""


class ConfigError(CodesiftError):
    """A recipe or command line the kit cannot use (unknown key, bad YAML, wrong value)."""


class OutputFolderError(CodesiftError):
    """An output path the kit will not replace (a folder it did not write, or a file)."""
