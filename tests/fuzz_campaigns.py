"""Campaign documents for the fuzzing tests: valid campaigns of several shapes, and
hypothesis strategies that damage them (wrong types, unknown, missing and hostile keys and
values, nested garbage) or damage their YAML text."""

from __future__ import annotations

import copy
import shutil

import yaml
from hypothesis import strategies as st

from tests.fuzz_values import NASTY_TEXT, NUMBERS, SENTINEL, SHELL_TEXT

TRUE = shutil.which("true") or "/bin/true"


def base_campaigns(base: str = "out") -> list[dict]:
    """Valid campaigns that write under ``base`` (relative: beside the campaign file):
    synthetic with every section spelled out, a realization range, HDF5 and AbacusSummit
    inputs, and clustering samples."""
    full = {
        "campaign": {
            "name": "fuzz",
            "version": "1",
            "description": "a campaign to damage",
            "tags": ["fuzz", "test"],
            "seed": 7,
            "notify": {"command": [TRUE, "--"], "failure_fraction": 0.5},
        },
        "science": {
            "source": "synthetic",
            "n_hosts": 50,
            "realizations": [0, 1],
            "redshifts": [0.0, 0.5],
            "log10_mhost_min_msun": 11.0,
            "model": "diffsky_sfh",
            "model_params": {"batch_min": 256, "batch_max": 1024},
        },
        "execution": {
            "profile": "local",
            "retries": 1,
            "backoff_base_s": 1,
            "backoff_cap_s": 4,
            "task_walltime_s": 60,
            "max_in_flight": 2,
            "compression": "gzip",
            "chunk_hosts": 1000,
            "executor": {"kind": "htex", "workers_per_node": 1},
            "provider": {"kind": "local", "max_blocks": 1, "worker_init": "true"},
            "launcher": {"kind": "simple"},
        },
        "resources": {
            "nodes": 1,
            "ranks": 1,
            "gpus": 0,
            "by_redshift": {0.5: {"walltime_s": 30, "ranks": 1}},
        },  # fmt: skip
        "outputs": {"base": base, "directory": "{name}_{version}"},
    }
    ranged = {
        "campaign": {"name": "ranged", "seed": 3},
        "science": {
            "source": "synthetic",
            "n_hosts": 20,
            "realizations": {"first": 2, "last": 6, "exclude": [4]},
            "redshifts": [1.1],
        },  # fmt: skip
        "outputs": {"base": base},
    }
    hdf5 = {
        "campaign": {"name": "halos", "version": "2", "seed": 0},
        "science": {
            "source": "hdf5",
            "input": "halos/r{realization}_z{redshift:.3f}.hdf5",
            "realizations": [0],
            "redshifts": [0.0, 1.0],
        },  # fmt: skip
        "execution": {"profile": "slurm", "provider": {"account": "m0000", "qos": "debug"}},
        "outputs": {"base": base, "directory": "runs/{name}-v{version}"},
    }
    abacus = {
        "campaign": {"name": "abacus", "seed": 11, "tags": []},
        "science": {
            "source": "abacus",
            "input": "${COVMOCKS_FUZZ_UNSET:-sims}/ph{realization:03d}/z{redshift:.3f}",
            "cleaning": "sims/cleaning",
            "realizations": [0, 1],
            "redshifts": [0.5],
            "log10_mhost_min_msun": 11.5,
        },  # fmt: skip
        "resources": {"nodes": 1, "ranks": 2, "gpus": 1},
        "outputs": {"base": base},
    }
    clustering = {
        "campaign": {"name": "clustered", "seed": 1},
        "science": {
            "source": "synthetic",
            "n_hosts": 30,
            "realizations": [0, 1, 2],
            "redshifts": [0.5, 1.0],
        },  # fmt: skip
        "clustering": {
            "samples": [
                {"name": "all", "select": "all"},
                {"name": "sf", "select": "sfr", "threshold": {0.5: 0.0, 1.0: 0.1}},
                {
                    "name": "dense",
                    "select": "mstar",
                    "number_density": 1e-3,
                    "redshifts": [0.5],
                },  # fmt: skip
            ],
            "nmesh": 16,
            "dk": 1,
            "calibration_boxes": 2,
        },
        "outputs": {"base": base},
    }
    return [full, ranged, hdf5, abacus, clustering]


BASES = base_campaigns()

# Keys a campaign file knows somewhere: moved to the wrong place they must be refused.
KNOWN_KEYS = ["campaign", "science", "execution", "resources", "outputs", "clustering",
              "name", "version", "description", "tags", "seed", "notify", "command",
              "failure_fraction", "source", "input", "cleaning", "n_hosts", "realizations",
              "redshifts", "first", "last", "exclude", "log10_mhost_min_msun", "model",
              "model_params", "profile", "retries", "backoff_base_s", "backoff_cap_s",
              "task_walltime_s", "max_in_flight", "compression", "chunk_hosts", "umask",
              "executor", "provider", "launcher", "kind", "workers_per_node",
              "mpi_launcher", "account", "walltime", "worker_init", "nodes", "ranks", "gpus",
              "walltime_s", "by_redshift", "base", "directory", "samples", "select",
              "threshold", "number_density", "nmesh", "colour", "<<", "batch_min",
              "diffstarpop"]  # fmt: skip
KEYS = (
    st.sampled_from(KNOWN_KEYS)
    | NASTY_TEXT
    | st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from([0.5, 1.0, -1.0, 1e300])
)
SCALARS = st.none() | st.booleans() | NUMBERS | NASTY_TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Values for string fields: paths, names, notify commands, templates.
STRINGY = (
    NASTY_TEXT
    | st.lists(NASTY_TEXT, max_size=4)
    | st.sampled_from([["sh", "-c", f"touch {SENTINEL}"], [f"$(touch {SENTINEL})"], []])
).map(copy.deepcopy)  # sampled lists are shared: a later operation must not change them


def _paths(node, prefix=()):
    """Every key path of a nested mapping/list, the root included."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _get(node, path):
    for part in path:
        node = node[part]
    return node


def _has(root, path) -> bool:
    try:
        _get(root, path[:-1])[path[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _set(root, path, value):
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


# Fields of free text (valid whatever they hold, unless a template asks for a field) and
# names (valid where they match the schema's pattern).
FREE_TEXT = [("campaign", "description"), ("campaign", "tags", 0), ("campaign", "tags", 1),
             ("campaign", "notify", "command", 1), ("execution", "provider", "worker_init"),
             ("execution", "provider", "account"), ("execution", "provider", "qos"),
             ("execution", "provider", "scheduler_options"), ("outputs", "directory"),
             ("outputs", "base")]  # fmt: skip
NAMES = [("campaign", "name"), ("campaign", "version"), ("clustering", "samples", 0, "name")]
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
OPERATIONS = ["set", "set_text", "delete", "add_key", "wrap", "swap_type", "free_text",
              "free_text", "free_text", "name"]  # fmt: skip


@st.composite
def damaged_campaigns(draw):
    """A valid campaign (``base_campaigns``) damaged by 0-4 operations: -> the data."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 4))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        node = _get(data, path)
        op = draw(st.sampled_from(OPERATIONS))
        if op == "free_text":
            path = draw(st.sampled_from(FREE_TEXT))
            if _has(data, path):
                data = _set(data, path, draw(NASTY_TEXT))
        elif op == "name":
            path = draw(st.sampled_from(NAMES))
            if _has(data, path):
                data = _set(data, path, draw(NAME))
        elif op == "set":
            data = _set(data, path, draw(VALUES))
        elif op == "set_text":
            data = _set(data, path, draw(STRINGY))
        elif op == "delete" and path:
            parent = _get(data, path[:-1])
            del parent[path[-1]]
        elif op == "add_key":
            target = node if isinstance(node, dict) else None
            if target is None and path and isinstance(_get(data, path[:-1]), dict):
                target = _get(data, path[:-1])
            if target is not None:
                target[draw(KEYS)] = draw(VALUES)
        elif op == "wrap":
            data = _set(data, path, draw(st.sampled_from([[node], {"value": node}])))
        elif op == "swap_type":
            swapped = {str: 1, int: "1", float: str(node), bool: "yes", type(None): "null"}
            if isinstance(node, list | dict):
                data = _set(data, path, list(node.values()) if isinstance(node, dict) else {
                    f"k{i}": v for i, v in enumerate(node)})  # fmt: skip
            else:
                data = _set(data, path, swapped.get(type(node), None))
    return data


def dump(data, allow_unicode: bool, flow: bool) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=allow_unicode,
                          default_flow_style=flow, width=80)  # fmt: skip


# YAML constructs that safe_dump never writes: tags, aliases, merge keys, directives, tabs.
YAML_SNIPPETS = [
    f"!!python/object/apply:os.system ['touch {SENTINEL}']",
    f"!!python/object/apply:subprocess.check_output [['touch', '{SENTINEL}']]",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!timestamp 2020-01-01",
    "!!float nan",
    "!!int 99999999999999999999999999",
    "!!str",
    "!custom x",
    "&a [*a]",
    "&x {a: 1}",
    "*x",
    "*undefined",
    "<<: *x",
    "<<: [1, 2]",
    "<<: {name: merged}",
    "? [complex, key]\n: v",
    "%YAML 1.1\n---",
    "---\n",
    "...\n",
    "\t",
    "'unterminated",
    '"\\xZZ"',
    "{a: 1, a: 2}",
    "[1, 2",
    "- item",
    "key: value: more",
    "2001-12-14t21:59:43.10-05:00",
    "0b1010",
    "1:20",
    ".inf",
    "-.inf",
    ".NaN",
    "~",
    "\x00",
    "\ufeff",
    "|\n  block",
    ">-\n  folded",
    *SHELL_TEXT,
]


@st.composite
def damaged_text(draw):
    """The YAML text of a valid campaign, cut, spliced or overwritten: -> bytes."""
    data = draw(st.sampled_from(BASES))
    text = dump(data, draw(st.booleans()), draw(st.booleans()))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cut", "insert", "drop_line", "dup_line", "replace",
                                   "indent", "snippet_value"]))  # fmt: skip
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "cut":
            joined = "".join(lines)
            lines = [joined[: draw(st.integers(0, len(joined)))]]
        elif op == "insert" and lines:
            lines.insert(i, draw(st.sampled_from(YAML_SNIPPETS) | st.text(max_size=20)) + "\n")
        elif op == "drop_line" and lines:
            del lines[i]
        elif op == "dup_line" and lines:
            lines.insert(i, lines[i])
        elif op == "replace" and lines:
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.text(min_size=1, max_size=3)) + line[j + 1 :]
        elif op == "indent" and lines:
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[i]
        elif op == "snippet_value" and lines and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(YAML_SNIPPETS))}\n"
    raw = "".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and raw:
        k = draw(st.integers(0, len(raw)))
        raw = raw[:k] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80",
                                               b"\x00", b""])) + raw[k:]  # fmt: skip
    return raw
