"""Campaign files: schema, error messages, the three-tier merge and its provenance."""

import contextlib
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from covmocks.campaign import (
    CONFIGS,
    Campaign,
    ExecutorValues,
    LauncherValues,
    ProviderValues,
    Resources,
    profile_names,
)
from covmocks.core.errors import ConfigError
from covmocks.core.layout import Layout

REPO = Path(__file__).resolve().parents[1]
CAMPAIGNS = REPO / "campaigns"

MINIMAL = """\
campaign:
  name: t
  seed: 1
science:
  source: synthetic
  n_hosts: 100
  realizations: [0, 1]
  redshifts: [0.0, 0.5]
"""


def write(tmp_path, text, name="campaign.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text) -> list[str]:
    """The problems of a campaign file, named as the user would name it: campaign.yaml."""
    write(tmp_path, text)
    with contextlib.chdir(tmp_path), pytest.raises(ConfigError) as info:
        Campaign.load("campaign.yaml")
    return info.value.problems


def test_minimal_campaign_takes_local_profile_and_defaults(tmp_path):
    c = Campaign.load(write(tmp_path, MINIMAL))
    assert c.name == "t" and c.version == "1" and c.seed == 1
    assert c.directory == tmp_path / "campaign-runs" / "t_1"
    assert c.science.realizations == (0, 1) and c.science.redshifts == (0.0, 0.5)
    assert c.science.input_path(0, 0.0) is None and c.science.log10_mhost_min_msun is None
    assert c.profile.name == "local" and c.execution.executor.kind == "htex"
    assert c.profile.path == CONFIGS / "local.yaml" and c.layout == Layout(c.directory)
    src = c.sources()
    assert src["campaign.seed"] == "campaign file campaign.yaml:3"
    assert src["execution.retries"].startswith("profile file local.yaml:")
    assert src["execution.provider.account"] == "default"
    assert src["science.model"] == "default" and c.science.model == "diffsky_sfh"


def test_merge_order_profile_then_campaign_then_override(tmp_path):
    write(tmp_path, """\
        executor: {kind: mpi}
        provider: {kind: slurm, account: from-profile, max_blocks: 3}
        execution: {retries: 5, max_in_flight: 7}
        resources: {nodes: 2, ranks: 8, gpus: 1}
        cost: {seconds_per_task: 42}
        """, "mine.yaml")  # fmt: skip
    c = Campaign.load(write(tmp_path, MINIMAL + textwrap.dedent("""\
        execution:
          profile: ./mine.yaml
          max_in_flight: 3
          task_walltime_s: 100
          provider: {account: from-campaign}
        resources:
          ranks: 4
          by_redshift:
            0.5: {gpus: 2, walltime_s: 99}
        """)))  # fmt: skip
    ex = c.execution
    assert ex.retries == 5 and ex.max_in_flight == 3 and ex.backoff_cap_s == 600.0
    assert ex.provider.account == "from-campaign"
    assert ex.provider.max_blocks == 3 and ex.executor.kind == "mpi"
    assert c.profile.cost.seconds_per_task == 42
    assert c.resources_for(0.0) == c.resources
    assert (c.resources.nodes, c.resources.ranks, c.resources.gpus) == (2, 4, 1)
    assert c.resources.walltime_s == 100
    z05 = c.resources_for(0.5)
    assert (z05.nodes, z05.ranks, z05.gpus, z05.walltime_s) == (2, 4, 2, 99)
    src = c.sources()
    assert src["execution.retries"] == "profile file mine.yaml:3"
    assert src["execution.max_in_flight"] == "campaign file campaign.yaml:11"
    assert src["execution.backoff_cap_s"] == "default"
    assert src["execution.provider.account"] == "campaign file campaign.yaml:13"
    assert src["execution.provider.max_blocks"] == "profile file mine.yaml:2"
    assert src["resources.nodes"] == "profile file mine.yaml:4"
    assert src["resources.ranks"] == "campaign file campaign.yaml:15"
    assert src["resources.by_redshift[0.5].gpus"] == "override campaign.yaml:17"
    config = c.config()
    assert config["execution"]["provider"]["account"] == "from-campaign"
    assert config["resources"]["by_redshift"][0.5] == {"gpus": 2, "walltime_s": 99.0}


PARSL_SECTIONS = {"executor": ExecutorValues, "provider": ProviderValues,
                  "launcher": LauncherValues}  # fmt: skip


def test_executor_provider_launcher_are_typed_sections_with_sources(tmp_path):
    write(tmp_path, """\
        executor: {kind: htex, workers_per_node: 4, mpi_tasks_per_block: 2}
        provider: {kind: slurm, partition: debug}
        launcher: {kind: srun}
        """, "mine.yaml")  # fmt: skip
    c = Campaign.load(write(tmp_path, MINIMAL + textwrap.dedent("""\
        execution:
          profile: mine.yaml
          executor: {workers_per_node: 3}
          launcher:
            mpi_launcher: srun
        """)))  # fmt: skip
    ex = c.execution
    assert isinstance(ex.executor, ExecutorValues) and isinstance(ex.provider, ProviderValues)
    assert isinstance(ex.launcher, LauncherValues) and isinstance(c.resources, Resources)
    executor = ex.executor
    assert (executor.kind, executor.workers_per_node, executor.mpi_tasks_per_block) == (
        "htex",
        3,
        2,
    )
    assert executor.available_accelerators is None
    assert (ex.provider.kind, ex.provider.partition, ex.provider.walltime) == (
        "slurm", "debug", "01:00:00")  # fmt: skip
    assert (ex.launcher.kind, ex.launcher.mpi_launcher) == ("srun", "srun")
    src = c.sources()
    assert src["execution.executor.kind"] == "profile file mine.yaml:1"
    assert src["execution.executor.workers_per_node"] == "campaign file campaign.yaml:11"
    assert src["execution.executor.mpi_tasks_per_block"] == "profile file mine.yaml:1"
    assert src["execution.executor.available_accelerators"] == "default"
    assert src["execution.provider.partition"] == "profile file mine.yaml:2"
    assert src["execution.provider.walltime"] == "default"
    assert src["execution.launcher.kind"] == "profile file mine.yaml:3"
    assert src["execution.launcher.mpi_launcher"] == "campaign file campaign.yaml:13"
    assert src["profile.path"] == "derived from execution.profile"
    assert "profile.executor" not in src and "execution.provider.workers_per_node" not in src
    assert "execution.provider.launcher" not in src and "execution.provider.mpi_launcher" not in src
    config = c.config()["execution"]
    assert config["executor"] == dict(
        kind="htex",
        workers_per_node=3,
        available_accelerators=None,
        mpi_tasks_per_block=2,
        cpu_affinity="none",
        heartbeat_period_s=5,
        heartbeat_threshold_s=30,
    )
    assert config["launcher"] == {"kind": "srun", "mpi_launcher": "srun"}


@pytest.mark.parametrize("name", profile_names())
def test_shipped_profiles_give_every_parsl_key_its_source(tmp_path, name):
    c = Campaign.load(write(tmp_path, MINIMAL + f"execution: {{profile: {name}}}\n"))
    src, written = c.sources(), yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for section, schema in PARSL_SECTIONS.items():
        for key in schema.model_fields:
            source = src[f"execution.{section}.{key}"]
            if key in written[section]:
                assert source.startswith(f"profile file {name}.yaml:"), (section, key, source)
                assert getattr(getattr(c.execution, section), key) == written[section][key]
            else:
                assert source == "default", (section, key, source)
    assert c.profile.name == name and c.profile.description == written["description"]


def test_shipped_profiles_say_what_runs_where(tmp_path):
    def load(name):
        return Campaign.load(write(tmp_path, MINIMAL + f"execution: {{profile: {name}}}\n"))

    local = load("local").execution
    assert (local.executor.kind, local.executor.workers_per_node) == ("htex", 2)
    assert (local.launcher.kind, local.launcher.mpi_launcher) == ("simple", "mpiexec")
    gpu = load("perlmutter-gpu").execution
    assert (gpu.executor.workers_per_node, gpu.executor.available_accelerators) == (4, 4)
    assert (gpu.provider.kind, gpu.launcher.kind) == ("slurm", "srun")
    mpi = load("perlmutter-mpi")
    assert (mpi.execution.executor.kind, mpi.execution.executor.mpi_tasks_per_block) == ("mpi", 4)
    assert (mpi.execution.launcher.kind, mpi.execution.launcher.mpi_launcher) == ("simple", "srun")
    assert mpi.execution.provider.nodes_per_block == 4 and mpi.resources.ranks == 4


def test_keys_that_left_the_provider_section_say_where_they_went(tmp_path):
    text = MINIMAL + textwrap.dedent("""\
        execution:
          provider:
            workers_per_node: 2
            launcher: srun
            mpi_launcher: srun
            available_accelerators: 4
        """)  # fmt: skip
    assert problems(tmp_path, text) == [
        "campaign.yaml:11 execution.provider.workers_per_node: unknown key; it moved to "
        "execution.executor.workers_per_node (HTEX: tasks a node runs at once) or "
        "execution.executor.mpi_tasks_per_block (MPI executor: MPI tasks a block runs at once)",
        "campaign.yaml:12 execution.provider.launcher: unknown key; it moved to "
        "execution.launcher.kind",
        "campaign.yaml:13 execution.provider.mpi_launcher: unknown key; it moved to "
        "execution.launcher.mpi_launcher",
        "campaign.yaml:14 execution.provider.available_accelerators: unknown key; it moved to "
        "execution.executor.available_accelerators",
    ]
    write(tmp_path, "executor: mpi\nprovider: {mpi_launcher: srun}\n", "p.yaml")
    assert problems(tmp_path, MINIMAL + "execution: {profile: p.yaml}\n") == [
        f"{tmp_path / 'p.yaml'}:1 executor: expected a mapping, got 'mpi' (write {{kind: mpi}})",
        f"{tmp_path / 'p.yaml'}:2 provider.mpi_launcher: unknown key; it moved to "
        "launcher.mpi_launcher",
    ]
    bad = MINIMAL + "execution: {executor: {kind: htx, workers: 2}}\n"
    assert problems(tmp_path, bad) == [
        "campaign.yaml:9 execution.executor.kind: expected one of 'htex' or 'mpi', got 'htx'",
        "campaign.yaml:9 execution.executor.workers: unknown key; did you mean 'workers_per_node'?",
    ]


def test_parsl_config_builds_from_the_typed_sections(tmp_path):
    from parsl.executors import HighThroughputExecutor, MPIExecutor
    from parsl.launchers import SimpleLauncher, SingleNodeLauncher, SrunLauncher
    from parsl.providers import LocalProvider

    from covmocks.workflow.pilots import LOCAL_NODEFILE, build_config, build_executor
    from covmocks.workflow.slurm_provider import PilotSlurmProvider

    local = Campaign.load(write(tmp_path, MINIMAL)).execution
    htex = build_executor(local)
    assert isinstance(htex, HighThroughputExecutor) and htex.max_workers_per_node == 2
    assert isinstance(htex.provider, LocalProvider)
    assert isinstance(htex.provider.launcher, SingleNodeLauncher)
    mpi = build_executor(local, mpi=True)
    assert isinstance(mpi, MPIExecutor) and mpi.max_workers_per_block == 2
    assert mpi.mpi_launcher == "mpiexec" and isinstance(mpi.provider.launcher, SimpleLauncher)
    assert LOCAL_NODEFILE in mpi.provider.worker_init
    gpu = Campaign.load(write(tmp_path, MINIMAL + textwrap.dedent("""\
        execution:
          profile: perlmutter-gpu
          provider: {account: m0000, status_polling_s: 5}
        """))).execution  # fmt: skip
    htex = build_executor(gpu)
    assert htex.max_workers_per_node == 4 and list(htex.available_accelerators) == list("0123")
    provider = htex.provider
    assert isinstance(provider, PilotSlurmProvider) and isinstance(provider.launcher, SrunLauncher)
    assert (provider.account, provider.exclusive, provider.status_polling_interval) == (
        "m0000", True, 5)  # fmt: skip
    perl_mpi = Campaign.load(write(tmp_path, MINIMAL + "execution: {profile: perlmutter-mpi}\n"))
    config = build_config(perl_mpi.execution, perl_mpi.directory, monitoring=False)
    (executor,) = config.executors
    assert isinstance(executor, MPIExecutor) and executor.max_workers_per_block == 4
    assert executor.mpi_launcher == "srun" and executor.provider.nodes_per_block == 4
    assert LOCAL_NODEFILE not in executor.provider.worker_init
    assert config.run_dir == str(perl_mpi.directory / "logs" / "parsl")


def test_unknown_keys_are_named_with_file_and_line(tmp_path):
    found = problems(tmp_path, MINIMAL.replace("  seed: 1", "  seed: 1\n  colour: red") + """\
execution:
  retry: 3
flavour: vanilla
""")  # fmt: skip
    assert found == [
        "campaign.yaml:4 campaign.colour: unknown key; expected one of: name, version, "
        "description, tags, seed, notify",
        "campaign.yaml:11 execution.retry: unknown key; did you mean 'retries'?",
        "campaign.yaml:12 flavour: unknown key; expected one of: campaign, science, execution, "
        "resources, outputs, clustering",
    ]


def test_type_errors_name_line_key_and_expectation(tmp_path):
    text = MINIMAL.replace("[0.0, 0.5]", "[0.0, 0.5, 1.0, z1.1]")
    assert problems(tmp_path, text) == [
        "campaign.yaml:8 science.redshifts[3]: expected a number, got 'z1.1'"
    ]
    block = MINIMAL.replace("[0.0, 0.5]", "\n    - 0.0\n    - 0.5\n    - z1.1")
    assert problems(tmp_path, block) == [
        "campaign.yaml:11 science.redshifts[2]: expected a number, got 'z1.1'"
    ]


def test_all_errors_at_once_in_line_order(tmp_path):
    found = problems(tmp_path, """\
        campaign:
          name: bad name
          seed: -1
        science:
          source: hdf5
          realizations: {first: 1, last: 2, exclud: [1]}
          redshifts: [0.0, true]
          model: nope
        execution:
          profile: nowhere
          retries: 1.5
          compression: zip
          provider: {walltime: 2h}
        """)  # fmt: skip
    assert found == [
        "campaign.yaml:2 campaign.name: expected a name of letters, digits, '.', '_' and '-', "
        "got 'bad name'",
        "campaign.yaml:3 campaign.seed: expected a number at least 0, got -1",
        "campaign.yaml:6 science.realizations.exclud: unknown key; did you mean 'exclude'?",
        "campaign.yaml:7 science.redshifts[1]: expected a number, got true",
        "campaign.yaml:8 science.model: unknown galaxy model 'nope'; expected one of: diffsky_sfh",
        f"campaign.yaml:10 execution.profile: no machine profile 'nowhere' "
        f"({REPO / 'covmocks/configs/nowhere.yaml'} not found); expected one of local, "
        "perlmutter-cpu, perlmutter-gpu, perlmutter-mpi, slurm or a path to a profile file",
        "campaign.yaml:11 execution.retries: expected an integer, got 1.5",
        "campaign.yaml:12 execution.compression: expected one of 'gzip', 'lzf' or 'none', "
        "got 'zip'",
        "campaign.yaml:13 execution.provider.walltime: expected a walltime HH:MM:SS, got '2h'",
    ]
    with contextlib.chdir(tmp_path), pytest.raises(ConfigError, match=r"^9 problems:\n  campa"):
        Campaign.load("campaign.yaml")


@pytest.mark.parametrize(
    "change, expected",
    [
        (("source: synthetic\n  n_hosts: 100", "source: abacus"),
         "campaign.yaml:4 science.input: required for source 'abacus'"),
        (("n_hosts: 100", "n_hosts: 100\n  input: x"), "science.input: not used by source"),
        (("source: synthetic\n  n_hosts: 100", "source: synthetic"),
         "campaign.yaml:4 science.n_hosts: required for source 'synthetic'"),
        (("[0.0, 0.5]", "[0.0, 0.5]\n  model_params: {batch: 3}"),
         "campaign.yaml:9 science.model_params.batch: not a parameter of model 'diffsky_sfh'"),
        (("[0.0, 0.5]", "[0.1, 0.1004]"), "redshifts repeat at 3 decimals (task names): 0.100"),
        (("[0, 1]", "[0, 1, 1]"), "campaign.yaml:7 science.realizations: realizations repeat: 1"),
        (("[0, 1]", "{first: 5, last: 3}"), "last (3) is before first (5)"),
        (("[0, 1]", "{first: 0, last: 3, exclude: [9]}"), "exclude lists [9], outside 0..3"),
        (("[0, 1]", "7"), "science.realizations: expected a list of integers or a mapping"),
        (("seed: 1", "seed: 1\n  version: x/y"), "campaign.version: expected a name of letters"),
        # random-stream ids below 2**31; at least one realization
        (("[0, 1]", "[0, 2147483648]"), "campaign.yaml:7 science.realizations[1]: expected a "
         "number less than 2147483648, got 2147483648"),
        (("[0, 1]", "{first: 0, last: 4294967296}"), "science.realizations.last: expected a "
         "number less than 2147483648"),
        (("[0, 1]", "[]"), "campaign.yaml:7 science.realizations: expected at least 1 item"),
        (("[0, 1]", "{first: 1, last: 2, exclude: [1, 2]}"), "exclude removes every "
         "realization of 1..2"),
        # redshifts the model can take; a mass cut the synthetic mass function covers
        (("[0.0, 0.5]", "[0.0, 1000.0]"), "campaign.yaml:8 science.redshifts[1]: expected a "
         "number at most 20.0, got 1000.0"),
        (("n_hosts: 100", "n_hosts: 100\n  log10_mhost_min_msun: 1.0e+300"),
         "science.log10_mhost_min_msun: expected a host mass cut in [8, 16]"),
        # no NUL in a path or a text that reaches a command
        (("seed: 1", 'seed: 1\n  description: "a\\0b"'), "campaign.description: text with a "
         "NUL character"),
        (("[0.0, 0.5]", '[0.0, 0.5]\noutputs: {directory: "run\\0"}'), "outputs.directory: "
         "a path with a NUL character"),
    ],
)  # fmt: skip
def test_cross_field_problems(tmp_path, change, expected):
    found = problems(tmp_path, MINIMAL.replace(*change))
    assert len(found) == 1 and expected in found[0], found


def test_section_level_problems(tmp_path):
    overrides = MINIMAL + "resources:\n  by_redshift:\n    0.7: {nodes: 2}\n"
    assert problems(tmp_path, overrides) == [
        "campaign.yaml:11 resources.by_redshift[0.7]: not one of science.redshifts"
    ]
    backoff = MINIMAL + "execution: {backoff_base_s: 100, backoff_cap_s: 10}\n"
    assert problems(tmp_path, backoff) == [
        "campaign.yaml:9 execution.backoff_base_s: 100.0 s exceeds backoff_cap_s "
        "(10.0 s, campaign file campaign.yaml:9)"
    ]
    # the profile's heartbeat period (5 s) and the campaign's threshold, merged
    heartbeat = MINIMAL + "execution: {executor: {heartbeat_threshold_s: 3}}\n"
    (found,) = problems(tmp_path, heartbeat)
    assert "execution.executor.heartbeat_threshold_s: must exceed heartbeat_period_s (5)" in found


def test_realization_range_is_inclusive_minus_exclusions(tmp_path):
    text = MINIMAL.replace("[0, 1]", "{first: 3, last: 7, exclude: [4, 6]}")
    assert Campaign.load(write(tmp_path, text)).science.realizations == (3, 5, 7)
    one = MINIMAL.replace("[0, 1]", "{first: 9, last: 9}")
    assert Campaign.load(write(tmp_path, one)).science.realizations == (9,)


def test_version_may_be_a_number_and_names_the_directory(tmp_path):
    text = MINIMAL.replace("seed: 1", "seed: 1\n  version: 2") + "outputs: {base: /x/runs}\n"
    c = Campaign.load(write(tmp_path, text))
    assert c.version == "2" and c.directory == Path("/x/runs/t_2")


def test_input_template_env_and_relative_paths(tmp_path, monkeypatch):
    template = "${SIMS:-sims}/ph{realization:03d}/halos/z{redshift:.3f}"
    text = MINIMAL.replace(
        "source: synthetic\n  n_hosts: 100", f"source: abacus\n  input: {template}"
    )
    monkeypatch.delenv("SIMS", raising=False)
    c = Campaign.load(write(tmp_path, text))
    assert c.science.input_path(7, 0.5) == str(tmp_path / "sims/ph007/halos/z0.500")
    monkeypatch.setenv("SIMS", "/data")
    c = Campaign.load(tmp_path / "campaign.yaml")
    assert c.science.input_path(7, 0.5) == "/data/ph007/halos/z0.500"
    assert c.sources()["science.input_resolved"] == "derived"

    unset = text.replace("${SIMS:-sims}", "${NO_SUCH_VARIABLE_HERE}")
    assert "environment variable NO_SUCH_VARIABLE_HERE is not set" in problems(tmp_path, unset)[0]
    bad_field = text.replace("ph{realization:03d}", "ph{phase}")
    assert problems(tmp_path, bad_field)[0].startswith("campaign.yaml:6 science.input: template")
    assert "uses {phase}; allowed: {realization}, {redshift}" in problems(tmp_path, bad_field)[0]
    bad_spec = text.replace("{redshift:.3f}", "{redshift:d}")
    assert "bad template" in problems(tmp_path, bad_spec)[0]


def test_profile_file_problems_name_the_profile_file(tmp_path):
    write(tmp_path, "executor: {kind: htex}\nprovider:\n  gpus_per_node: many\n", "p.yaml")
    found = problems(tmp_path, MINIMAL + "execution: {profile: p.yaml}\n")
    assert found == [
        f"{tmp_path / 'p.yaml'}:3 provider.gpus_per_node: expected an integer, got 'many'"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "campaign.yaml: the file is empty"),
        ("# only a comment\n", "campaign.yaml: the file is empty"),
        ("campaign: [", "campaign.yaml:1:12: invalid YAML: while parsing a flow node"),
        ("a: b\n c: d\n", "campaign.yaml:2:3: invalid YAML: mapping values are not allowed"),
        ("- 1\n- 2\n", "campaign.yaml (top level): expected a mapping, got a list"),
        ("just text", "campaign.yaml (top level): expected a mapping, got 'just text'"),
        ("a: 1\na: 2\n", "campaign.yaml:2 a: duplicate key"),
        ("a: 2001-02-30\n", "campaign.yaml: invalid YAML value: day is out of range"),
        ("a: !!python/object:os.system x\n", "campaign.yaml:1:4: invalid YAML: "),
    ],
)
def test_broken_yaml_is_one_clean_line(tmp_path, text, expected):
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "\n" not in found[0]


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="nothing.yaml: no such file"):
        Campaign.load(tmp_path / "nothing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"campaign: caf\xe9\n")
    with pytest.raises(ConfigError, match="latin1.yaml: not UTF-8 text"):
        Campaign.load(tmp_path / "latin1.yaml")


def _words(campaign) -> str:
    """The campaign file's text, comments included, as single-spaced words."""
    return " ".join(campaign.text.replace("#", " ").split())


def test_shipped_campaigns_validate_and_say_what_they_hold():
    """Each shipped campaign loads, and its comments and description state its values."""
    demo = Campaign.load(CAMPAIGNS / "demo.yaml")
    nr, nz = len(demo.science.realizations), len(demo.science.redshifts)
    assert demo.science.realizations == (0, 1, 3, 4)  # first and last included, 2 excluded
    assert f"{nr} realizations x {nz} snapshots = {nr * nz} boxes" in _words(demo)
    assert f"{demo.science.n_hosts:,} host halos each" in _words(demo)
    assert f"{nr} realizations x {nz} snapshots" in demo.description
    assert demo.directory == REPO / "campaign-runs" / "demo_1"
    mini = Campaign.load(CAMPAIGNS / "mini_abacus.yaml")
    assert mini.science.realizations == (0,) and mini.science.redshifts == (0.0,)
    assert mini.science.input_path(0, 0.0).endswith("Mini_N64_L32/halos/z0.000")
    roman = Campaign.load(CAMPAIGNS / "roman_grs_covariance.yaml")
    z = roman.science.redshifts
    nr = len(roman.science.realizations)
    assert f"{nr:,} realizations x {len(z)} snapshots" in _words(roman)
    assert sum(1 <= x <= 3 for x in z) == 16 and sum(x < 1 for x in z) == 4  # its comment
    assert roman.profile.name == "perlmutter-gpu"
    assert roman.profile.path == CONFIGS / "perlmutter-gpu.yaml"
    assert roman.science.input_path(3000, 1.1).endswith("_c000_ph3000/halos/z1.100")
    assert roman.resources_for(0.8).walltime_s == 3600 and roman.resources_for(1.1).gpus == 1
    assert roman.science.cleaning_path(3000, 1.1).endswith("AbacusSummit/cleaning")


# Random or truncated text must end in a Campaign or a ConfigError, never another exception.
SHIPPED = [
    (CAMPAIGNS / f"{name}.yaml").read_text()
    for name in ("demo", "mini_abacus", "roman_grs_covariance")
]
FUZZ_PATH = CAMPAIGNS / "fuzz.yaml"  # never written: relative paths resolve next to it
YAML_CHARS = st.sampled_from(list("ab01.5e-: \n\t[]{},'\"&*!|>#%@?~") + ["seed", "z1.1", "null"])
KEYS = st.sampled_from(
    ["campaign", "science", "execution", "resources", "outputs", "name", "seed", "source",
     "realizations", "redshifts", "first", "last", "exclude", "profile", "by_redshift",
     "provider", "nodes", "input", "n_hosts", "model_params", "<<", "0.5"]
)  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["synthetic", "abacus", "local", "{realization}", "${X}", "1.5"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


def _load_or_config_error(text: str) -> None:
    try:
        Campaign.from_text(text, FUZZ_PATH)
    except ConfigError as exc:
        assert exc.problems and all(p.strip() and "\n" not in p for p in exc.problems)


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.text(max_size=200))
def test_random_text_gives_a_clean_error(text):
    _load_or_config_error(text)


@fuzz
@given(st.lists(YAML_CHARS, max_size=60).map("".join))
def test_random_yaml_like_text_gives_a_clean_error(text):
    _load_or_config_error(text)


@fuzz
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_mappings_give_a_clean_error(data):
    _load_or_config_error(yaml.safe_dump(data))


@fuzz
@given(st.sampled_from(SHIPPED), st.data())
def test_truncated_or_damaged_campaigns_give_a_clean_error(text, data):
    cut = data.draw(st.integers(0, len(text)))
    _load_or_config_error(text[:cut])
    lines = text.splitlines(keepends=True)
    drop = data.draw(st.integers(0, len(lines) - 1))
    _load_or_config_error("".join(lines[:drop] + lines[drop + 1 :]))
