"""What every ``experiments/*.py`` entry point shares: bad user input ends in ONE line on stderr and exit status 1.

``run(main, prog=...)`` parses the absl flags (config overrides included) and calls ``main(argv)``; an error the
library raises on user input (``ValueError`` and its subclasses such as ``LoadError``, ``CheckpointMismatchError``,
``DatasetError``; ``OSError`` such as ``FileNotFoundError``; ``FloatingPointError`` for a run that went
non-finite; a flag or override that does not parse) prints ``<prog>: error: <Type>: <message>`` and exits 1.
``--debug`` shows the full traceback instead. Anything else (a ``KeyError`` or ``TypeError`` from inside the
library) is a bug and keeps its traceback.

Every tool answers ``--help`` (exit 0) with its docstring and its own flags; ``--helpfull`` lists every flag.
Config overrides are ``--config.a.b=value`` in every tool. Tools that read a workdir (``evaluate``, ``detect``,
``export``) apply overrides given without ``--config`` to the workdir's ``config.json``.

A tool whose modes differ in weight names the heavy modules of one mode with :func:`lazy_import` at its top, so
the light mode starts without them (``evaluate.py --results_dir`` runs without JAX, grain or OpenCV).
:func:`in_background` runs a job in a forked process beside the tool's own work (``evaluate.py`` reads the result
files while it parses the annotations).
"""
from __future__ import annotations

import ast
import atexit
import ctypes
import importlib.util
import logging
import os
import pickle
import signal
import sys
import threading
import types
from typing import Any, Callable, Sequence

from absl import app, flags
from absl import logging as absl_logging

from yolojax.config import files as config_files

USER_ERRORS = (ValueError, OSError, FloatingPointError)
# A config override naming a field that does not exist raises AttributeError / KeyError while the flags are parsed.
PARSE_ERRORS = USER_ERRORS + (AttributeError, KeyError)
HELP_FLAGS = ("-h", "--help", "-?", "--helpshort", "--help=true")


def lazy_import(name: str) -> types.ModuleType:
    """Module ``name``, loaded when one of its attributes is first used (``importlib.util.LazyLoader``, the
    recipe of the importlib documentation); its parent packages load now. Already imported: that module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def in_background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """Starts ``fn(*args, **kwargs)`` in a forked child process and returns ``wait()``, which returns its result
    (pickled back) or raises its exception. Where the OS does not fork, one CPU is all there is, or the process
    already runs other threads (Python's, or JAX's runtime once JAX is loaded: forking them risks a deadlock),
    ``fn`` runs in ``wait()`` itself. A ``wait`` never called: the child is ended when the process exits. For
    CPU-bound jobs that need nothing but their arguments (no threads, devices or open files shared with the
    parent)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not hasattr(os, "fork") or cpus < 2 or threading.active_count() > 1 or "jax" in sys.modules:
        return lambda: fn(*args, **kwargs)
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the outcome, leave without the parent's exit handlers
        status = 0
        try:
            os.close(read_fd)
            try:
                outcome = (True, fn(*args, **kwargs))
            except Exception as e:  # re-raised in the parent
                outcome = (False, e)
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump(outcome, f, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    done = []

    def wait() -> Any:
        if done:
            raise RuntimeError("in_background: wait() called twice")
        done.append(True)
        with os.fdopen(read_fd, "rb") as f:
            try:
                ok, value = pickle.load(f)
            except EOFError:
                ok, value = False, RuntimeError(f"in_background: the child running {fn.__name__} ended without a "
                                                "result")
        os.waitpid(pid, 0)
        if not ok:
            raise value
        return value

    def end_child() -> None:
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    atexit.register(end_child)
    return wait


def one_line(error: BaseException) -> str:
    """An exception as one line, "Type: message" with newlines folded."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else error
    return f"{type(error).__name__}: {' '.join(str(text).split())}"


def fail(prog: str, error: BaseException | str) -> int:
    """Prints ``<prog>: error: ...`` on stderr; returns 1."""
    message = error if isinstance(error, str) else one_line(error)
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 1


def run(main: Callable[[list[str]], int | None], **kwargs) -> None:
    """:func:`keep_freed_memory`, :func:`invoke`, then exits with its status."""
    keep_freed_memory()
    sys.exit(invoke(main, **kwargs))


def keep_freed_memory() -> bool:
    """With glibc, malloc keeps freed memory for reuse instead of returning it to the OS: one arena, no mmap'ed
    chunks, no trimming (``mallopt``). XLA:CPU allocates each step's temporaries (72 MB in the quickstart train
    step) afresh; glibc served them with mmap and unmapped them on free, so every step paid for ~25k page faults,
    about a fifth of the step's CPU time. The process keeps its peak heap instead. Effective for threads started
    after the call (before the JAX backend starts), so the entry points call it first. Returns whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl): left as it is
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
    return all(mallopt(option, value) == 1 for option, value in
               ((m_arena_max, 1), (m_mmap_max, 0), (m_trim_threshold, 1 << 30)))


def invoke(main: Callable[[list[str]], int | None], *, prog: str, argv: Sequence[str] | None = None,
           flag_values: flags.FlagValues = flags.FLAGS, workdir_config: bool = False) -> int:
    """Parses absl flags from ``argv`` (default ``sys.argv``; ``argv[0]`` is the program) into ``flag_values``,
    runs ``main(remaining argv)`` and returns its exit status, turning user-input errors into one line (see the
    module docstring). ``workdir_config``: config overrides without ``--config`` apply to
    ``<--workdir or --checkpoint's workdir>/config.json``. A tool with its own ``flag_values`` can be invoked
    again in the same process (its flags start from their defaults each time)."""
    argv = list(sys.argv if argv is None else argv)
    if any(a in HELP_FLAGS for a in argv[1:]):
        return print_help(prog, flag_values)
    if "--helpfull" in argv[1:]:
        print(flag_values.get_help())
        return 0
    if workdir_config:
        argv = _workdir_config(argv)
    argv = json_configs(argv)
    debug = "--debug" in argv or "--debug=true" in argv
    if flag_values is not flags.FLAGS:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.WARNING)  # absl logs "unparse_flags() called" at INFO
        flag_values.unparse_flags()
        root.setLevel(level)
    absl_logging.use_absl_handler()  # the library logs through absl: INFO and up on stderr, as absl's app.run does
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("jax").setLevel(logging.WARNING)  # its INFO lines (backends it did not find) are noise here
    absl_logger = logging.getLogger("absl")
    added = _THIRD_PARTY_INFO not in absl_logger.filters
    if added:
        absl_logger.addFilter(_THIRD_PARTY_INFO)
    try:
        return _parse_and_run(main, prog, argv, flag_values, debug)
    finally:  # an in-process call leaves the caller's logging as it found it
        if added:
            absl_logger.removeFilter(_THIRD_PARTY_INFO)


def _parse_and_run(main: Callable[[list[str]], int | None], prog: str, argv: list[str],
                   flag_values: flags.FlagValues, debug: bool) -> int:
    saved_argv, sys.argv = sys.argv, argv  # ml_collections reads the --config.a.b overrides from sys.argv
    try:
        rest = flag_values(argv)
    except flags.Error as e:  # unknown flag, missing required flag, bad value
        return fail(prog, str(e).splitlines()[0] if str(e) else repr(e))
    except PARSE_ERRORS as e:  # a config override that does not fit (e.g. a misspelled field)
        if debug:
            raise
        return fail(prog, _override_error(e, argv))
    finally:
        sys.argv = saved_argv
    try:
        status = main(rest)
    except app.UsageError as e:
        return fail(prog, f"usage: {e}")
    except USER_ERRORS as e:
        if debug:
            raise
        return fail(prog, e)
    return int(status or 0)


class _ThirdPartyInfoFilter(logging.Filter):
    """Lets INFO records through only from yolojax and the entry points: the libraries under them (TFDS, orbax,
    grain) log at INFO through absl too, and a one-line error must stay one line. Warnings always pass."""

    _OURS = (os.path.dirname(os.path.abspath(__file__)),
             os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or os.path.abspath(record.pathname).startswith(self._OURS)


_THIRD_PARTY_INFO = _ThirdPartyInfoFilter()


def print_help(prog: str, flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """Prints the entry point's docstring and its own flags on stdout; returns 0."""
    main_module = sys.modules.get("__main__")
    doc = (getattr(main_module, "__doc__", None) or "").strip()
    own = flag_values.main_module_help() if flag_values is flags.FLAGS else flag_values.get_help()
    print(f"{prog}: {doc}\n" if doc else f"{prog}\n")
    print(own or flags.FLAGS.get_help())
    print("\n  --helpfull: every flag, including those of the libraries")
    return 0


def _unquoted(text: str) -> str:
    """``text`` without the layers of Python string quoting that KeyError's repr-like str() adds (ml_collections
    wraps a KeyError's str() in an AttributeError: ``'\\'base_lrr\\'\\nDid you mean ...'``)."""
    for _ in range(3):
        stripped = text.strip()
        if len(stripped) < 2 or stripped[0] != stripped[-1] or stripped[0] not in "'\"":
            break
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            break
        if not isinstance(value, str):
            break
        text = value
    return text


def _override_error(error: BaseException, argv: Sequence[str] = ()) -> BaseException | str:
    """The most helpful message of an override's exception chain: the one with ml_collections' "Did you mean"
    hint if there is one, else the innermost exception (config_flags wraps an override's KeyError twice), as one
    line without Python quoting, after the override it is about (``--config.a.b=v``) when one names the field."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    found = next((e for e in chain if "did you mean" in str(e).lower()), chain[-1])
    if not (isinstance(found, (KeyError, AttributeError)) and found.args):
        return found
    text = " ".join(_unquoted(str(found.args[0])).split())
    field = text.split()[0].strip("'\"") if text else ""
    override = next((a.split("=", 1)[0] for a in argv if a.startswith("--config.") and field
                     and field in a.split("=", 1)[0].split(".")[1:]), None)
    if override:
        text = text.replace(f"'{field}' Did you mean", f"no field '{field}'. Did you mean", 1)
    return f"{type(found).__name__}: {f'override {override}: ' if override else ''}{text}"


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _workdir_config(argv: list[str]) -> list[str]:
    """Adds ``--config <workdir>/config.json`` when overrides (``--config.x=``) come without ``--config``."""
    if _flag_value(argv, "config") is not None or not any(a.startswith("--config.") for a in argv):
        return argv
    where = _flag_value(argv, "workdir") or _flag_value(argv, "checkpoint")
    if where is None:
        return argv  # the flag parser then names the missing --config
    path = os.path.abspath(where)
    for candidate in (path, os.path.dirname(os.path.dirname(path))):  # a workdir, or <workdir>/checkpoints/<step>
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return argv[:1] + ["--config", os.path.join(candidate, "config.json")] + argv[1:]
    return argv


def json_configs(argv: list[str], flag: str = "config") -> list[str]:
    """Rewrites ``--config path/config.json`` (a training workdir's saved config) into the config-file flag's
    ``--config yolojax/config/files.py:path/config.json``; other arguments are unchanged."""

    loader = config_files.__file__
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
