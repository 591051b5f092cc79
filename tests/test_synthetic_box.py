"""The synthetic source at a given box size: ``science.box_size`` and ``host_fraction``, the
box spec and ``covmocks generate`` arguments that carry them, and what records them."""

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest

from covmocks.box.spec import BoxSpec
from covmocks.campaign import Campaign
from covmocks.cli import main
from covmocks.core.errors import ConfigError, CovmocksError, InputError
from covmocks.halos import sources, synthetic
from covmocks.workflow.plan import make_plan
from tests.conftest import campaign_file

H = synthetic.SYNTHETIC_COSMOLOGY.h


def _expected(box_size, fraction, redshift=0.5, cut=11.0):
    """round(F n V): n(>M) per comoving Mpc^3 from diffsky's cumulative mass function (M in
    Msun), V = (L / h)^3 in Mpc^3."""
    from diffsky.mass_functions.hmf_model import DEFAULT_HMF_PARAMS, predict_cuml_hmf

    density = 10 ** float(predict_cuml_hmf(DEFAULT_HMF_PARAMS, cut, redshift))
    return round(fraction * density * (box_size / H) ** 3)


def test_box_size_is_honoured_and_holds_fraction_of_the_mass_function():
    full = sources.open_source("synthetic", box_size=40.0, redshift=0.5, seed=3,
                               log10_mhost_min_msun=11.0)  # fmt: skip
    half = sources.open_source("synthetic", box_size=40.0, host_fraction=0.5, redshift=0.5,
                               seed=3, log10_mhost_min_msun=11.0)  # fmt: skip
    for src, fraction in ((full, 1.0), (half, 0.5)):
        assert src.header.box_size == 40.0
        assert src.n_hosts == _expected(40.0, fraction) > 1000
        assert src.n_hosts == synthetic.synthetic_hosts(40.0, 11.0, 0.5, fraction)
        block = next(src.iter_blocks(10**6))
        assert len(block) == src.n_hosts
        assert block.pos.min() >= 0 and block.pos.max() < 40.0
    assert abs(half.n_hosts - full.n_hosts / 2) <= 1
    assert half.describe() == (f"synthetic(box_size=40 Mpc/h, host_fraction=0.5, "
                               f"n_hosts={half.n_hosts}, seed=3)")  # fmt: skip
    assert half.header.sim_name == "synthetic_L40_f0.5_seed3"


def test_n_hosts_boxes_are_as_before():
    """The n_hosts form keeps its box, name and stream: the same hosts whatever else exists."""
    src = sources.open_source("synthetic", n_hosts=500, redshift=0.5, seed=3,
                              log10_mhost_min_msun=11.0)  # fmt: skip
    assert src.describe() == "synthetic(n_hosts=500, seed=3)"
    assert src.header.sim_name == "synthetic_n500_seed3"
    assert _expected(src.header.box_size, 1.0) == 500
    a = next(src.iter_blocks(10**6))
    b = next(synthetic.SyntheticSource(500, 11.0, 0.5, 3).iter_blocks(10**6))
    np.testing.assert_array_equal(a.pos, b.pos)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"n_hosts": 10, "box_size": 40.0}, "exactly one of n_hosts and box_size"),
        ({"box_size": -1.0}, "box_size must be a positive number"),
        ({"box_size": math.inf}, "box_size must be a positive number"),
        ({"box_size": 40.0, "host_fraction": 1.5}, r"host_fraction must be in \(0, 1\]"),
        ({"box_size": 40.0, "host_fraction": 0.0}, r"host_fraction must be in \(0, 1\]"),
        ({"box_size": 0.01}, "holds no host above"),
    ],
)  # fmt: skip
def test_synthetic_source_refuses(kwargs, expected):
    with pytest.raises(InputError, match=expected):
        sources.open_source("synthetic", log10_mhost_min_msun=11.0, **kwargs)


def _parse(argv) -> BoxSpec:
    return main.box_spec(main.generate_parser("test").parse_args([str(a) for a in argv]))


def test_box_spec_carries_box_size_through_generate_arguments():
    spec = BoxSpec(source="synthetic", output=Path("/out/b.hdf5"), box_size=500.0,
                   host_fraction=0.0016, redshift=1.1, seed=4)  # fmt: skip
    spec.check()
    assert _parse(spec.to_argv()) == spec
    assert spec.to_argv()[-8:-4] == ["--box-size", "500.0", "--host-fraction", "0.0016"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--n-hosts", "5", "--box-size", "40"], "needs n_hosts or box_size"),
        (["--box-size", "0"], "box_size must be a positive number"),
        (["--box-size", "nan"], "box_size must be a positive number"),
        (["--n-hosts", "5", "--host-fraction", "0.5"], "host_fraction goes with box_size"),
        (["--box-size", "40", "--host-fraction", "2"], "host_fraction goes with box_size and is"),
    ],
)  # fmt: skip
def test_generate_refuses_bad_box_arguments(argv, expected):
    with pytest.raises(CovmocksError, match=expected):
        _parse(["--source", "synthetic", "--output", "x.hdf5", *argv])
    with pytest.raises(CovmocksError, match="box_size applies to source synthetic"):
        _parse(["--source", "hdf5", "--input", "h.hdf5", "--box-size", "40", "--output", "x"])


def _problems(tmp_path, **science) -> list[str]:
    campaign_file(tmp_path, science=science, file="campaign.yaml")
    with contextlib.chdir(tmp_path), pytest.raises(ConfigError) as info:
        Campaign.load("campaign.yaml")
    return info.value.problems


@pytest.mark.parametrize(
    "science, expected",
    [
        ({"box_size": 40.0}, "science.box_size: give one of n_hosts and box_size, not both"),
        ({"n_hosts": None}, "science.n_hosts: required for source 'synthetic' (or box_size)"),
        ({"host_fraction": 0.5}, "science.host_fraction: only with box_size"),
        ({"n_hosts": None, "box_size": 40.0, "host_fraction": 1.5},
         "science.host_fraction: expected a number at most 1"),
        ({"n_hosts": None, "box_size": 0}, "science.box_size: expected a number greater than 0"),
        ({"n_hosts": None, "source": "hdf5", "input": "h.hdf5", "box_size": 40.0},
         "science.box_size: not used by source 'hdf5'"),
    ],
)  # fmt: skip
def test_campaign_schema_errors_name_the_key(tmp_path, science, expected):
    found = _problems(tmp_path, **science)
    assert len(found) == 1 and expected in found[0], found


def test_campaign_records_box_size_and_fraction(tmp_path):
    layer = {"science": {"n_hosts": None, "box_size": 40.0, "host_fraction": 0.5}}
    c = Campaign.load(campaign_file(tmp_path, layer, campaign={"name": "boxed"}))
    assert (c.science.box_size, c.science.host_fraction) == (40.0, 0.5)
    record = c.science_record
    assert record["science.box_size"] == 40.0 and record["science.host_fraction"] == 0.5
    default = {"science": {"n_hosts": None, "box_size": 40.0}}
    c1 = Campaign.load(campaign_file(tmp_path, default, campaign={"name": "whole"}))
    assert c1.science.host_fraction == 1.0 == c1.science_record["science.host_fraction"]
    spec = BoxSpec.for_task(c, make_plan(c).tasks[0])
    assert (spec.box_size, spec.host_fraction, spec.n_hosts) == (40.0, 0.5, None)
    # campaigns of n_hosts keep the record they had: no new keys
    old = Campaign.load(campaign_file(tmp_path, campaign={"name": "counted"}))
    assert not {"science.box_size", "science.host_fraction"} & set(old.science_record)
