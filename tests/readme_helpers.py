"""The README's commands, as a user copies them, and a sandbox to run them in (tests/test_readme*.py)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced code block of README.md."""
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    """Every shell command of the README's code blocks: continuation lines joined, trailing comments dropped."""
    commands = []
    for lang, body in readme_blocks():
        if lang == "python":
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#") and line.split()[0] in ("python", "make"):
                commands.append(" ".join(line.split()))
    return commands


def readme_python_blocks() -> list[str]:
    return [body for lang, body in readme_blocks() if lang == "python"]


def sandbox_env(home: str, cache: str) -> dict:
    """HOME is the sandbox (so ~/data/VOCdevkit and ~/tensorflow_datasets are the test's); one persistent XLA
    cache, the cheaper-to-compile rbg PRNG and the suite's cheap-to-compile XLA flags (tests/conftest.py):
    compilation dominates these tiny runs, and none of this changes what the commands do."""
    env = dict(os.environ)
    env.update(HOME=home, JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_DEFAULT_PRNG_IMPL="rbg",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    return env


def make_sandbox(path: str) -> str:
    """A user's working directory: experiments/, configs/ and docs/ of this checkout (symlinks) and a home."""
    os.makedirs(os.path.join(path, "home"), exist_ok=True)
    for name in ("experiments", "configs", "docs"):
        link = os.path.join(path, name)
        if not os.path.exists(link):
            os.symlink(os.path.join(ROOT, name), link)
    return path


def run(command: str, extra: list[str], cwd: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs ``command`` exactly as the README writes it, with ``extra`` arguments appended, through bash (so
    ``~`` and ``$HOME`` expand as in a terminal); the python is this interpreter's venv (first on PATH)."""
    line = command + "".join(" " + shlex.quote(a) for a in extra)
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{line}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    return proc
