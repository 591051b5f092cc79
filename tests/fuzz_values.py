"""Shared pieces of the fuzzing tests (tests/test_fuzz.py): hostile text, the sentinel that
proves no field value reached a shell, hypothesis settings and the shape of a clean error.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from covmocks.core.errors import ConfigError

# Every surface gets this many generated cases in all (several tests may share them).
CASES_PER_SURFACE = 1000
FUZZ_SCALE = float(os.environ.get("COVMOCKS_FUZZ_SCALE", "1"))
FUZZ_RANDOM = os.environ.get("COVMOCKS_FUZZ_RANDOM") == "1"


def fuzz_settings(max_examples: int) -> settings:
    """Reproducible in CI: derandomized (the same cases every run), no example database, no
    per-example deadline (the first example pays for imports).

    To soak locally: ``COVMOCKS_FUZZ_SCALE=10`` runs ten times the cases and
    ``COVMOCKS_FUZZ_RANDOM=1`` draws new ones each run (not derandomized).
    """
    return settings(
        max_examples=max(1, round(max_examples * FUZZ_SCALE)),
        deadline=None,
        derandomize=not FUZZ_RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )  # fmt: skip


# A directory that nothing in the tests writes to: a command run from a field value would
# create a file here (``touch``) and the tests check that none ever appears.
SENTINEL_DIR = Path(tempfile.mkdtemp(prefix="covmocks-fuzz-sentinel-"))
atexit.register(shutil.rmtree, SENTINEL_DIR, True)
SENTINEL = SENTINEL_DIR / "pwned"


def executed_commands() -> list[str]:
    """Files that a command smuggled into a field value has created (empty: none ran)."""
    return sorted(p.name for p in SENTINEL_DIR.iterdir())


_TOUCH = f"touch {SENTINEL}"
# Text that a shell would run, or that format, template, path or option parsing could trip on.
SHELL_TEXT = [
    f"$({_TOUCH})",
    f"`{_TOUCH}`",
    f"; {_TOUCH}",
    f"x; {_TOUCH} #",
    f"| {_TOUCH}",
    f"&& {_TOUCH}",
    f"\n{_TOUCH}\n",
    f"x\n{_TOUCH}",
    f"'; {_TOUCH}; '",
    f'"; {_TOUCH}; "',
    f"$(touch {SENTINEL}_2)",
    f"{_TOUCH} &",
]
ODD_TEXT = [
    "",
    " ",
    "\t",
    "-",
    "--help",
    "-h",
    "-rf",
    "--",
    "*",
    "?",
    "[",
    "]",
    "~",
    "~nosuchuser/x",
    ".",
    "..",
    "../../..",
    "/",
    "//",
    "/dev/null",
    "/etc/passwd",
    "/proc/self/environ",
    "a/b",
    "a\\b",
    "${HOME}",
    "${COVMOCKS_FUZZ_UNSET}",
    "${COVMOCKS_FUZZ_UNSET:-x}",
    "$HOME",
    "%s%n%x",
    "{name}",
    "{version}",
    "{realization}",
    "{redshift:.3f}",
    "{realization!r}",
    "{0}",
    "{}",
    "{",
    "}",
    "{{}}",
    "{name.__class__}",
    "{realization[0]}",
    "null",
    "~",
    "yes",
    "no",
    "0x10",
    "1e999",
    "nan",
    "-inf",
    "0o777",
    "007",
    "1_000",
    "名前",
    "naïve-café",
    "Ωmega",
    "😀",
    "\u202eevil",
    "\u200b",
    "e\u0301",
    "\ufeffbom",
    "a\x00b",
    "\x1b[31mred",
    "\r\n",
    "a" * 300,
    "é" * 200,
]
NASTY_TEXT = st.sampled_from(SHELL_TEXT + ODD_TEXT) | st.text(max_size=30)


def has_line_break(text: str) -> bool:
    """Whether ``text`` would print on more than one line (``str.splitlines``: newline,
    carriage return, form feed, U+2028...)."""
    return len(f"x{text}x".splitlines()) > 1


def printable_arg(text: str) -> str:
    """``text`` as a command line can hold it: no NUL (line breaks kept: an error quoting
    one escapes it)."""
    return text.replace("\x00", "?")


ARG_TEXT = NASTY_TEXT.map(printable_arg)


def _file_name(text: str) -> bool:
    return (text not in ("", ".", "..") and "/" not in text and "\x00" not in text
            and not has_line_break(text)
            and len(text.encode("utf-8", "surrogatepass")) < 200)  # fmt: skip


# Text that can be a file name, possibly hostile: no NUL, no '/', and no control characters
# (an exception quotes a path as it is; the command line escapes them, and its fuzzing
# gives them in other values, ARG_TEXT).
NAME_TEXT = st.sampled_from([t for t in SHELL_TEXT + ODD_TEXT if _file_name(t)]) | st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\u2028\u2029"),
    min_size=1,
    max_size=20,
).filter(_file_name)

HUGE_NUMBERS = [2**31, 2**31 - 1, 2**32, 2**53 + 1, 2**63, 2**64, 10**30, 10**400 // 10**100,
                1e300, 1.7976931348623157e308, 1e-320, -0.0, -1, -(2**63)]  # fmt: skip
NUMBERS = (
    st.integers()
    | st.floats()
    | st.sampled_from(HUGE_NUMBERS)
    | st.integers(-3, 3)
    | st.floats(-3, 3)
)


# ------------------------------------------------------------------ the shape of an error


def check_config_error(exc: ConfigError, labels: tuple[str, ...]) -> None:
    """A ConfigError as the project words it: one problem per line, each naming a file of
    ``labels`` (the campaign file, or a profile file it names) with a line where known,
    then a key path or what is wrong; several problems as ``N problems:`` then the lines,
    indented by two spaces."""
    problems = exc.problems
    assert problems, "a ConfigError without problems"
    for p in problems:
        assert p.strip() and not has_line_break(p), f"problem not one line: {p!r}"
        assert "Traceback" not in p, p
        assert any(_names_file(p, label) for label in labels), (
            f"problem names none of {labels}: {p!r}"
        )
    text = str(exc)
    if len(problems) == 1:
        assert text == problems[0]
    else:
        assert text == f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)


def _names_file(problem: str, label: str) -> bool:
    """``problem`` begins ``label``, ``label:line`` or ``label:line:column``, then ': ' or
    ' key.path: '."""
    if not problem.startswith(label):
        return False
    rest = problem[len(label) :]
    return re.match(r"(:\d+(:\d+)?)?(: | \S.*?: )", rest, re.S) is not None


def check_cli_stderr(err: str, status: int) -> None:
    """``covmocks: error: ...`` on one line (or a ConfigError's ``N problems:`` block) and
    status 2; nothing else, and never a traceback."""
    assert "Traceback" not in err, err
    assert status == 2, (status, err)
    lines = err.rstrip("\n").splitlines()
    assert lines[0].startswith("covmocks: error: "), err
    first = lines[0].removeprefix("covmocks: error: ")
    # a message says what is wrong: more than a bare value (e.g. a KeyError's 'nan')
    assert len(first.split()) > 1, f"an error without an explanation: {err!r}"
    m = re.fullmatch(r"(\d+) problems:", first)
    if m:
        assert len(lines) == int(m[1]) + 1, err
        assert all(line.startswith("  ") and line.strip() for line in lines[1:]), err
    else:
        assert len(lines) == 1, f"error on more than one line: {err!r}"
