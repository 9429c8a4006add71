"""Errors that the command line turns into one clear line and exit code 2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


class N2NASError(Exception):
    """A user-facing error: bad input, bad option, or a file that cannot be used.

    ``where`` names the file, record or option at fault; ``problem`` says what is wrong with it.
    ``str(err)`` is the single line the CLI prints.
    """

    def __init__(self, where: str | Path, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")

    def __reduce__(self):
        # Pickled with both arguments: an error raised in a worker process (Ray, a process pool) must arrive
        # as itself, not as a TypeError from unpickling with the message alone.
        return type(self), (self.where, self.problem)


class DataError(N2NASError):
    """A data file, folder or label that cannot be read or does not make sense."""


class ConfigError(N2NASError):
    """An option, pipeline file or search-space value that is invalid."""


def exit_on_error(main: Callable[[], object], prog: str) -> None:
    """Run a script's ``main()``; an :class:`N2NASError` (also one re-raised from a worker process) ends it with
    one line, ``{prog}: error: ...``, and exit code 2 instead of a traceback."""
    try:
        main()
    except N2NASError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
