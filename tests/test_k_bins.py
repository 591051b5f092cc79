"""k bins on the box's lattice: never empty, never on a shell, and settings that do not fit a
snapshot's box refused when the campaign is planned, naming the key, file and snapshot."""

from pathlib import Path

import numpy as np
import pytest

from covmocks.campaign import Campaign
from covmocks.cli import main
from covmocks.clustering.power import PowerSettings, fundamental
from covmocks.core.errors import ConfigError
from covmocks.covariance import gaussian
from covmocks.workflow.metadata import write_plan
from tests.conftest import MINI_Z0

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
SAMPLES = {"samples": [{"name": "all", "select": "all"}]}


@pytest.mark.parametrize("dk", [1, 2, 3, 5])
def test_no_bin_is_empty_and_no_shell_lies_on_an_edge(dk):
    """Every bin of every width holds modes (the lattice enumeration, independent of
    calc_power), and no integer |n|^2 equals an edge's square."""
    counts, _ = gaussian.bin_moments(dk, 40)
    assert np.all(counts > 0), counts
    edges2 = (0.5 + dk * np.arange(41)) ** 2
    assert np.all(np.abs(edges2 - np.round(edges2)) == 0.25)


def test_the_old_production_setting_gave_empty_bins_and_the_new_one_none():
    """k_max 0.4 in 40 linear bins from 0 (the old production file) left bins narrower than
    k_f = 0.01257 h/Mpc of a 500 Mpc/h box, the first one empty; the shipped file's lattice
    bins hold modes in every bin."""
    kf = fundamental(500.0)
    old = np.linspace(0, 0.4, 41)
    shells = np.sqrt(np.arange(1, int((0.4 / kf) ** 2) + 1)) * kf  # |k| of every shell
    in_bin = np.histogram(shells, old)[0]
    assert in_bin[0] == 0
    roman = Campaign.load(CAMPAIGNS / "roman_grs_covariance.yaml")
    c = roman.clustering
    settings = PowerSettings(nmesh=c.nmesh, k_max=c.k_max, dk=c.dk)
    edges = settings.k_edges(500.0)
    assert len(edges) - 1 == 15 and edges[-1] <= c.k_max
    counts, _ = gaussian.bin_moments(c.dk, len(edges) - 1)
    assert np.all(counts > 0)
    words = " ".join(roman.text.replace("#", " ").split())
    assert "15 bins" in words and "45 numbers per sample" in words  # the comment is true


def test_a_k_max_above_nyquist_is_refused_at_planning(make_campaign):
    """A synthetic box of 200 hosts is about 30 Mpc/h: nmesh 16 reaches 1.6 h/Mpc."""
    campaign = make_campaign(clustering={**SAMPLES, "nmesh": 16, "k_max": 5.0})
    with pytest.raises(ConfigError) as err:
        write_plan(campaign)
    text = str(err.value)
    assert "clustering.k_max" in text and "Nyquist" in text and "z=0" in text
    assert f"{campaign.path.name}:" in text
    assert not campaign.layout.root.exists()  # refused before anything was written


def test_a_k_max_below_the_first_bin_is_refused(make_campaign):
    campaign = make_campaign(clustering={**SAMPLES, "nmesh": 16, "k_max": 0.01})
    with pytest.raises(ConfigError, match="below the first bin's upper edge"):
        write_plan(campaign)


def test_the_abacus_header_gives_the_box_size(make_campaign, mini_catalog_dir, capsys):
    """The Mini catalog is a 32 Mpc/h box: k_f = 0.196 h/Mpc, nmesh 16 Nyquist 1.57 h/Mpc."""
    science = {"source": "abacus", "input": str(MINI_Z0.parent) + "/z{redshift:.3f}",
               "n_hosts": None, "realizations": [0], "redshifts": [0.0]}  # fmt: skip
    too_high = make_campaign(science=science, clustering={**SAMPLES, "nmesh": 16, "k_max": 2.0})
    assert main.main(["plan", "-q", str(too_high.path)]) == 2
    err = capsys.readouterr().err
    assert "clustering.k_max" in err and "1.5708" in err and "32 Mpc/h" in err
    fits = make_campaign(science=science, clustering={**SAMPLES, "nmesh": 16, "k_max": 1.5},
                         campaign={"name": "fits"})  # fmt: skip
    assert main.main(["plan", "-q", str(fits.path)]) == 0


def test_the_old_key_names_its_replacement(tmp_path):
    from tests.conftest import campaign_file

    path = campaign_file(tmp_path, clustering={**SAMPLES, "k_bins": 8})
    with pytest.raises(ConfigError, match=r"k_bins: unknown key; it moved to clustering\.dk"):
        Campaign.load(path)
