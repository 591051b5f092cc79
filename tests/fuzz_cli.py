"""Command lines for the fuzzing tests: ``covmocks`` verbs with their options, given hostile,
malformed or out-of-range values, unknown options, and paths that do not exist or are not
what the verb wants.

Paths in a command line are written with placeholders that the test replaces: ``@DIR@`` (a
fresh copy of the template directory, ``make_template``: campaign files, a planned campaign
directory, a halo file, a catalog) and ``@OUT@`` (an empty directory for the files a verb
writes). Nothing a command line names as an output lies outside them.

Values may hold line breaks and other control characters (never NUL, which no command line
can hold): an error that quotes them must stay on one line.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from tests.fuzz_values import ARG_TEXT, NAME_TEXT

# Files of the template directory (see make_template).
VALID = "@DIR@/valid.yaml"  # planned: its campaign directory exists
CLUSTERED = "@DIR@/clustered.yaml"  # valid, with clustering samples, not planned
HOSTILE = "@DIR@/c; touch pwned $(touch pwned2) `touch pwned3`.yaml"  # valid, not planned
VALID_CAMPAIGNS = [VALID, CLUSTERED, HOSTILE]
INVALID_CAMPAIGNS = ["@DIR@/invalid.yaml", "@DIR@/empty.yaml", "@DIR@/latin1.yaml",
                     "@DIR@/halos.hdf5", "@DIR@/nowhere.yaml", "@DIR@", "@DIR@/sub",
                     "@DIR@/名前 $(x).yaml"]  # fmt: skip
HALOS = "@DIR@/halos.hdf5"
CATALOG = "@DIR@/catalog.hdf5"
READ_PATHS = [HALOS, CATALOG, "@DIR@/nowhere.hdf5", "@DIR@", "@DIR@/invalid.yaml",
              "@DIR@/garbage.hdf5", "/dev/null", "/etc/passwd", "/proc/self/environ",
              "/nonexistent/dir/x"]  # fmt: skip

CAMPAIGN_TEXT = {
    "valid.yaml": """\
        campaign: {name: valid, seed: 1, description: "$(touch pwned) `touch pwned5`",
                   tags: ["; touch pwned6", "名前"]}
        science: {source: synthetic, n_hosts: 20, realizations: [0, 1], redshifts: [0.5]}
        outputs: {base: out, directory: "d $(touch pwned4) {name}"}
        """,
    "clustered.yaml": """\
        campaign: {name: clustered, seed: 2}
        science: {source: synthetic, n_hosts: 20, realizations: [0, 1], redshifts: [0.5]}
        clustering:
          samples: [{name: all, select: all}]
          nmesh: 16
        outputs: {base: out}
        """,
    "c; touch pwned $(touch pwned2) `touch pwned3`.yaml": """\
        campaign: {name: hostile-name, version: "1.0-rc", seed: 3}
        science: {source: hdf5, input: "halos.hdf5", realizations: [0], redshifts: [0.5]}
        outputs: {base: "out $(touch pwned)"}
        """,
    "invalid.yaml": """\
        campaign: {name: "no spaces allowed", seed: -1, colour: red}
        science: {source: nowhere, realizations: "all", redshifts: []}
        """,
    "empty.yaml": "",
}


def make_template(root: Path) -> None:
    """Write the template directory's files (the planned campaign is planned by the
    caller, with ``covmocks plan``)."""
    from tests.fuzz_halos import valid_halo_file

    for name, text in CAMPAIGN_TEXT.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (root / "latin1.yaml").write_bytes(b"campaign: {name: caf\xe9}\n")
    (root / "garbage.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "sub").mkdir()
    valid_halo_file(root / "halos.hdf5", n=20)


def fake_populate(self, hosts, snap, root_key) -> dict:
    """Stands in for the galaxy model (``DiffskySFH.populate``) in command-line fuzzing:
    one central per host, consistent with the catalog schema, no JAX."""
    from covmocks.core import units
    from covmocks.galaxies.diffsky import quenched_log_ssfr_threshold

    n = len(hosts)
    lgm = units.log_mass_h_to_msun(np.log10(hosts.mass), snap.header.cosmology.h)
    lgm = lgm.astype(np.float32)
    mstar = (lgm - 2).astype(np.float32)
    sfr = np.zeros(n, np.float32)
    quenched = (sfr - mstar) < np.float32(quenched_log_ssfr_threshold(snap.t_obs))
    return {"pos": hosts.pos.astype(np.float32), "vel": hosts.vel.astype(np.float32),
            "is_central": np.ones(n, bool), "host_local": np.arange(n), "log10_mhalo": lgm,
            "log10_mpeak": lgm, "log10_mstar": mstar, "log10_sfr": sfr,
            "log10_mstar_surviving": mstar - np.float32(0.2),
            "is_quenched": quenched, "diffstar_quenched_branch": np.zeros(n, bool)}  # fmt: skip


# ---------------------------------------------------------------- values of options

# Values of options: mostly of the right type (to get past argparse), some out of range,
# some junk.
SMALL_INT = st.integers(-2, 60).map(str)
INT_TEXT = st.one_of(
    SMALL_INT,
    SMALL_INT,
    st.integers().map(str),
    st.sampled_from(["0", "-1", str(2**31), str(2**63), "9" * 30, "1e3", "1_000", "٣", " 7 ",
                     "0x10", "", "nan", "1.5", "+5", "--1"]),
    ARG_TEXT,
)  # fmt: skip
SMALL_FLOAT = st.floats(0, 3).map(repr)
FLOAT_TEXT = st.one_of(
    SMALL_FLOAT,
    SMALL_FLOAT,
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-0", "0.5", "1.1", "3", "1e-320", "١.٥",
                     "0.5.5", "1e308", "-1", "-2", "12", "11.5"]),
    ARG_TEXT,
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
MODEL_PARAMS_TEXT = st.sampled_from([
    '{"batch_min": 256, "batch_max": 1024}', '{"log10_msub_min_msun": 11}', "{}",
    '{"batch_min": 0}', '{"batch_min": 10, "batch_max": 5}', '{"n_t_table": 50}',
    '{"diffstarpop": {}}', '{"diffmahpop": {"nope": 1}}',
    '{"foo": 1}', '[1]', '"x"', "null", '{"batch_min": "x"}', '{"n_t_table": 0}',
    '{"log10_msub_min_msun": null}', "{", "NaN", "",
])  # fmt: skip
SAMPLE_RULES_TEXT = st.sampled_from([
    '[{"name": "all", "select": "all"}]', '[{"name": "m", "select": "mstar", "floor": 9}]',
    '[{"name": "d", "select": "sfr", "density": 0.001}]', "[]",
    '[{"name": "x", "select": "bogus"}]', '[{"name": "m", "select": "mstar"}]',
    '[{"name": "d", "select": "sfr", "density": -1}]', '[1]', '{"a": 1}', '[{"nme": 1}]',
    "null", "[", '"rules"',
])  # fmt: skip
TASK_TEXT = st.sampled_from(["r0000_z0.500", "r0001_z0.500", "r0002_z0.500", "r0000_z1.000",
                             "r0_z0.5", "all"]) | ARG_TEXT  # fmt: skip
CAMPAIGN_ARG = st.one_of(
    st.sampled_from(VALID_CAMPAIGNS), st.sampled_from(VALID_CAMPAIGNS),
    st.sampled_from(VALID_CAMPAIGNS), st.sampled_from(INVALID_CAMPAIGNS), ARG_TEXT,
)  # fmt: skip
READ_ARG = st.sampled_from(READ_PATHS) | ARG_TEXT
# Where a verb may write: always under @OUT@ (a few names, so that two options may collide).
OUT_ARG = st.sampled_from(["mock.hdf5", "stats.hdf5", "sub/dir/mock.hdf5", "mock.hdf5/x"]).map(
    lambda name: f"@OUT@/{name}"
) | NAME_TEXT.map(lambda name: f"@OUT@/{name}")


def _good_or_bad(good, bad):
    """Mostly a value that works (to reach the code behind argparse), sometimes not."""
    return st.one_of(good, good, good, bad)


GOOD_INT = st.integers(1, 60).map(str)
GOOD_SOURCE = st.sampled_from(["synthetic", "synthetic", "hdf5", "abacus"])
GENERATE_OPTIONS = {
    "-q": None,
    "--seed": _good_or_bad(st.integers(0, 2**31 - 1).map(str), INT_TEXT),
    "--host-limit": _good_or_bad(GOOD_INT, INT_TEXT),
    "--realization": _good_or_bad(st.integers(0, 5000).map(str), INT_TEXT),
    "--overwrite": None,
    "--chunk-hosts": _good_or_bad(GOOD_INT, INT_TEXT),
    "--redshift": _good_or_bad(st.sampled_from(["0.5", "0", "1.1", "3"]), FLOAT_TEXT),
    "--statistics": OUT_ARG,
    "--compression": _good_or_bad(st.sampled_from(["gzip", "lzf", "none"]), ARG_TEXT),
    "--snapshot": _good_or_bad(st.integers(0, 5000).map(str), INT_TEXT),
    "--log10-mhost-min-msun": _good_or_bad(st.floats(10, 13).map(repr), FLOAT_TEXT),
    "--model-params": _good_or_bad(MODEL_PARAMS_TEXT, JSON_VALUES.map(json.dumps)),
    "--samples": OUT_ARG,
    "--sample-rules": _good_or_bad(SAMPLE_RULES_TEXT, JSON_VALUES.map(json.dumps)),
    "--n-hosts": _good_or_bad(GOOD_INT, INT_TEXT),
    "--model": _good_or_bad(st.just("diffsky_sfh"), ARG_TEXT),
    "-v": None,
    "--source": _good_or_bad(GOOD_SOURCE, ARG_TEXT),
    "--input": _good_or_bad(st.just(HALOS), READ_ARG),
    "--task": TASK_TEXT,
    "--campaign": CAMPAIGN_ARG,
    "--cleaning": READ_ARG,
}
COMMON = {"-v": None, "-q": None, "--verbose": None, "--quiet": None}
VERBS = {
    ("generate",): GENERATE_OPTIONS,
    ("plan",): COMMON,
    ("status",): COMMON | {"--json": None, "--outliers": None},
    ("report",): COMMON | {"--watch": FLOAT_TEXT},
    ("covariance",): COMMON,
    ("estimate",): COMMON | {"--nodes": INT_TEXT},
    ("config", "show"): COMMON,
    ("validate",): {"-q": None, "-v": None},
    ("run",): COMMON | {"--dry-run": None, "--no-monitoring": None},
    ("retry",): COMMON | {"--dry-run": None, "--no-monitoring": None},
    ("config",): {},
    (): {},
}
JUNK = ARG_TEXT | st.sampled_from(["--help", "-h", "--version", "--", "-", "--nope",
                                     "--output", "-x", "--campaign=x", "--n-hosts=5",
                                     "generate", "plan"])  # fmt: skip


def _int(text: str):
    try:
        return int(text)
    except ValueError:
        return None


# How a ``generate`` command line starts: a box that could be made, before other options.
GENERATE_STARTS = {
    "synthetic": lambda draw: [
        "--source",
        "synthetic",
        "--n-hosts",
        draw(GENERATE_OPTIONS["--n-hosts"]),
    ],  # fmt: skip
    "hdf5": lambda draw: [
        "--source",
        "hdf5",
        "--input",
        draw(st.sampled_from([HALOS, HALOS]) | READ_ARG),
    ],  # fmt: skip
    "campaign": lambda draw: ["--campaign", draw(CAMPAIGN_ARG), "--task", draw(TASK_TEXT)],
    "nothing": lambda draw: [],
}


@st.composite
def command_lines(draw) -> list[str]:
    """A ``covmocks`` command line (with placeholders, see the module)."""
    verb = draw(st.sampled_from([("generate",)] * 4 + list(VERBS)))
    options = VERBS[verb]
    argv: list[str] = []
    if verb == ("validate",):
        argv += draw(st.lists(READ_ARG, min_size=0, max_size=3))
    elif verb == ("generate",):
        argv += GENERATE_STARTS[draw(st.sampled_from(list(GENERATE_STARTS)))](draw)
    elif verb and verb != ("config",):
        argv.append(draw(CAMPAIGN_ARG))
    size = 4 if verb == ("generate",) else 2
    # (hypothesis favours the first of a list: the options are listed harmless first)
    chosen = draw(st.lists(st.sampled_from(list(options)), max_size=size)) if options else []
    for name in chosen:
        strategy = options[name]
        argv += [name] if strategy is None else [name, draw(strategy)]
    if verb == ("generate",) and draw(st.sampled_from([True] * 19 + [False])):
        argv += ["--output", draw(OUT_ARG)]
    if verb == ("retry",):
        argv += draw(st.lists(TASK_TEXT, max_size=2))
    if draw(st.sampled_from([False] * 7 + [True])):
        argv.insert(draw(st.integers(0, len(argv))), draw(JUNK))
    argv = list(verb) + argv
    return guard(argv)


def guard(argv: list[str]) -> list[str]:
    """Keep a command line cheap and harmless: ``run``/``retry`` of a valid campaign only
    as ``--dry-run`` (nothing started); a box of more than 200 synthetic hosts only with a
    host limit (the cases would otherwise draw forever)."""
    if argv[:1] in (["run"], ["retry"]) and not any(a in INVALID_CAMPAIGNS for a in argv):
        argv = argv + ["--dry-run"]
    if argv[:1] == ["generate"]:
        sizes = [_int(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--n-hosts"]
        sizes += [_int(a.split("=", 1)[1]) for a in argv if a.startswith("--n-hosts=")]
        if any(s is not None and s > 200 for s in sizes):
            argv = argv + ["--host-limit", "50"]
    return argv


# ---------------------------------------------------------------- reading a command line


def option(argv: list[str], name: str) -> str | None:
    """The value argparse takes for ``name`` (the last one given), or None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value
