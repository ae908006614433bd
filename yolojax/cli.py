"""What every ``experiments/*.py`` entry point shares: bad user input ends in ONE line on stderr and exit status 1.

``run(main, prog=...)`` parses the absl flags (config overrides included) and calls ``main(argv)``; an error the
library raises on user input (``ValueError`` and its subclasses such as ``LoadError``, ``CheckpointMismatchError``,
``DatasetError``; ``OSError`` such as ``FileNotFoundError``; ``FloatingPointError`` for a run that went
non-finite; a flag or override that does not parse) prints ``<prog>: error: <Type>: <message>`` and exits 1.
``--debug`` shows the full traceback instead. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags

from yolojax.config import files as saved_config

USER_ERRORS = (ValueError, OSError, FloatingPointError, KeyError)
# A config override naming a field that does not exist raises AttributeError while the flags are parsed.
PARSE_ERRORS = USER_ERRORS + (AttributeError,)


def one_line(error: BaseException) -> str:
    """An exception as one line, "Type: message" with newlines folded."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else error
    return f"{type(error).__name__}: {' '.join(str(text).split())}"


def fail(prog: str, error: BaseException | str) -> int:
    """Prints ``<prog>: error: ...`` on stderr; returns 1."""
    message = error if isinstance(error, str) else one_line(error)
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 1


def run(main: Callable[[list[str]], int | None], *, prog: str, argv: Sequence[str] | None = None) -> None:
    """Parses absl flags from ``argv`` (default ``sys.argv``), runs ``main`` and exits with its status, turning
    user-input errors into one line (see the module docstring)."""

    argv = json_configs(list(sys.argv if argv is None else argv))
    debug = "--debug" in argv or "--debug=true" in argv
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:  # unknown flag, missing required flag, bad value
        sys.exit(fail(prog, str(e).splitlines()[0] if str(e) else repr(e)))
    except PARSE_ERRORS as e:  # a config override that does not fit (e.g. a misspelled field)
        if debug:
            raise
        sys.exit(fail(prog, _root_cause(e)))

    try:
        status = main(rest)
    except app.UsageError as e:
        sys.exit(fail(prog, f"usage: {e}"))
    except USER_ERRORS as e:
        if debug:
            raise
        sys.exit(fail(prog, e))
    sys.exit(int(status or 0))


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (config_flags wraps an override's KeyError twice)."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    return error


def json_configs(argv: list[str], flag: str = "config") -> list[str]:
    """Rewrites ``--config path/config.json`` (a training workdir's saved config) into the config-file flag's
    ``--config yolojax/config/files.py:path/config.json``; other arguments are unchanged."""

    loader = saved_config.__file__
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == f"--{flag}" and i + 1 < len(argv) and argv[i + 1].endswith(".json"):
            out += [arg, f"{loader}:{argv[i + 1]}"]
            i += 2
            continue
        if arg.startswith(f"--{flag}=") and arg.endswith(".json"):
            arg = f"--{flag}={loader}:{arg.split('=', 1)[1]}"
        out.append(arg)
        i += 1
    return out
