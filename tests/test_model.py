"""Model pieces: registry, parameters, padding, ARGUS sampling, concentration, kernels."""

import inspect

import numpy as np
import pytest

from covmocks.core import nfw
from covmocks.core.errors import InputError
from covmocks.galaxies import batching, diffsky, kernels, registry
from covmocks.galaxies import params as model_params


def test_registry_names_and_unknown_model():
    assert "diffsky_sfh" in registry.MODELS
    with pytest.raises(InputError, match="unknown galaxy model"):
        registry.get_model("nope")


def test_unknown_population_parameter():
    with pytest.raises(InputError, match="diffstarpop parameter"):
        registry.get_model("diffsky_sfh", {"diffstarpop": {"not_a_param": 1.0}})


@pytest.mark.parametrize(
    "params, key",
    [
        ({"n_t_table": -3}, "n_t_table"),
        ({"n_t_table": 0}, "n_t_table"),
        ({"n_t_table": 2.5}, "n_t_table"),
        ({"n_t_table": "36"}, "n_t_table"),
        ({"n_t_table": True}, "n_t_table"),
        ({"precision": "float16"}, "precision"),
        ({"log10_msub_min_msun": None}, "log10_msub_min_msun"),
        ({"log10_msub_min_msun": float("nan")}, "log10_msub_min_msun"),
        ({"batch_min": 0}, "batch_min"),
        ({"batch_min": "x"}, "batch_min"),
        ({"batch_min": 10, "batch_max": 5}, "batch_max"),
        ({"diffmahpop": [1]}, "diffmahpop"),
        ({"diffstarpop": {"lgmcrit": "x"}}, "diffstarpop"),
        ({"foo": 1}, "foo"),
    ],
)
def test_bad_model_parameters_are_one_line_naming_the_key(params, key):
    with pytest.raises(InputError) as info:
        registry.get_model("diffsky_sfh", params)
    message = str(info.value)
    assert key in message and "\n" not in message, message


def test_model_parameters_not_a_mapping():
    with pytest.raises(InputError, match="mapping"):
        registry.get_model("diffsky_sfh", [1])


def test_resolved_parameters_are_recorded():
    """Every parameter that changes the catalog is recorded; the batch sizes are not."""
    mdl = registry.get_model("diffsky_sfh", {"batch_min": 256, "batch_max": 4096})
    assert set(mdl.params) == set(model_params.RECORDED)
    assert (mdl.params["n_t_table"], mdl.params["precision"]) == (36, "float32")  # the defaults
    defaults = model_params.population_defaults()
    custom = model_params.resolve({"n_t_table": 100.0, "precision": "float64"},
                                  defaults["diffmahpop"], defaults["diffstarpop"])  # fmt: skip
    assert custom["n_t_table"] == 100 and isinstance(custom["n_t_table"], int)
    assert custom["precision"] == "float64"


def test_campaign_schema_knows_every_parameter():
    """The campaign schema lists the model's parameters from its signature."""
    from covmocks.campaign.schema import model_parameters

    assert set(model_parameters("diffsky_sfh")) == set(model_params.DEFAULTS)
    # the guide's table of parameters is made from these: each one has a meaning there
    assert list(model_params.MEANINGS) == list(model_params.DEFAULTS)


def test_batch_shapes_are_few_and_padding_bounded():
    """Three lengths per kernel whatever the number of objects (powers of two gave up to
    seven), every object once, fewer than ``smallest`` padded rows."""
    assert batching.batch_lengths(1024, 65536) == [65536, 8192, 1024]
    assert batching.batch_lengths(256, 512) == [512, 256]
    assert batching.batch_lengths(4, 4) == [4]
    seen = set()
    for n in range(0, 300000, 37):
        batches = batching.batch_sizes(n, 1024, 65536)
        assert sum(count for count, _ in batches) == n
        assert sum(size - count for count, size in batches) < 1024
        seen |= {size for _, size in batches}
    assert seen == {1024, 8192, 65536}


def test_padded_map_trims_and_splits():
    calls = []

    def fn(x):
        calls.append(len(x))
        return {"y": x * 2}

    out = batching.padded_map(fn, {"x": np.arange(10)}, smallest=4, largest=4)
    np.testing.assert_array_equal(out["y"], np.arange(10) * 2)
    assert calls == [4, 4, 4]


def test_argus_table_matches_scipy():
    from scipy.stats import argus

    cdf, x = kernels.argus_inverse_cdf_table(1.5)
    u = np.random.default_rng(1).random(200000)
    sample = np.interp(u, cdf, x)
    assert sample.mean() == pytest.approx(argus.mean(1.5), abs=2e-3)
    assert sample.std() == pytest.approx(argus.std(1.5), abs=2e-3)


def test_concentration_decreases_with_mass():
    c = nfw.concentration_dm14(np.array([11.0, 12.0, 13.0, 14.0]), 0.0)
    assert np.all(np.diff(c) < 0)
    assert c[1] == pytest.approx(10**0.905, rel=1e-6)


def test_quenched_threshold_is_one_fifth_of_the_inverse_cosmic_age():
    """sSFR < 1/(5 t_obs) (Franx et al. 2008; Pacifici et al. 2016), t_obs in yr."""
    assert diffsky.quenched_log_ssfr_threshold(10.0) == pytest.approx(
        np.log10(0.2 / 1e10), abs=1e-12
    )
    assert diffsky.quenched_log_ssfr_threshold(13.8) == pytest.approx(-10.8388, abs=1e-4)
    # earlier snapshots (younger universe) quench at a higher sSFR
    assert diffsky.quenched_log_ssfr_threshold(3.0) > diffsky.quenched_log_ssfr_threshold(8.6)


def test_quenched_at_snapshot_uses_the_stored_float32_ssfr():
    t_obs = 8.59
    threshold = np.float32(diffsky.quenched_log_ssfr_threshold(t_obs))
    below = float(np.nextafter(threshold, np.float32(-np.inf)))
    log10_mstar = np.array([10.0, 10.0, 10.0, 10.0])
    log10_ssfr = np.array([-12.0, below, float(threshold), -9.5])
    is_q = diffsky.quenched_at_snapshot(log10_ssfr + log10_mstar, log10_mstar, t_obs)
    # float32 sSFR one step below the float32 threshold: quenched; at it: not (at t_obs 8.59
    # the float32 threshold lies 1.2e-8 dex below the float64 one: a float64 test says quenched)
    assert list(is_q) == [True, True, False, False]


def test_model_version_and_columns_name_the_state_and_the_branch():
    """1.1: is_quenched is the state at the snapshot; diffstarpop's branch has its own name.
    1.2: the histories' steps and precision are parameters (36, float32 by default).
    1.3: the surviving stellar mass beside the mass formed."""
    assert registry.MODELS["diffsky_sfh"].version == "1.3"
    assert {"is_quenched", "diffstar_quenched_branch"} <= set(diffsky.GALAXY_COLUMNS)
    assert {"log10_mstar", "log10_mstar_surviving"} <= set(diffsky.GALAXY_COLUMNS)


# --- kernels -------------------------------------------------------------------------------


def _histories(n=300, seed=0):
    """Plausible mass-assembly histories and diffstar parameters of ``n`` galaxies."""
    rng = np.random.default_rng(seed)
    mah = np.stack([rng.uniform(10.5, 14.5, n), rng.uniform(-0.5, 1.0, n),
                    rng.uniform(1.5, 3.5, n), rng.uniform(0.2, 1.5, n),
                    rng.uniform(4.0, 13.8, n)], axis=1)  # fmt: skip
    sfh = np.stack([rng.uniform(10.5, 13.0, n), rng.uniform(-10.5, -9.0, n),
                    rng.uniform(0.5, 2.0, n), rng.uniform(-1.0, -0.1, n),
                    rng.uniform(0.3, 1.1, n), rng.uniform(-1.5, -0.5, n),
                    rng.uniform(-3.0, -0.5, n), rng.uniform(-3.0, -0.5, n)], axis=1)  # fmt: skip
    return mah, sfh


def _evaluate(n_t, precision, mah, sfh, smallest, largest):
    return batching.padded_map(
        lambda mah, p: kernels.evaluate_sfh(n_t, precision, mah, p, 13.8, 1.1399, 0.156),
        {"mah": mah, "p": sfh}, smallest, largest,
    )  # fmt: skip


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_histories_do_not_depend_on_batching(precision):
    """Each precision is bit-reproducible whatever the padded batch shapes."""
    mah, sfh = _histories()
    a = _evaluate(36, precision, mah, sfh, 16, 64)
    b = _evaluate(36, precision, mah, sfh, 512, 512)
    c = _evaluate(36, precision, mah[::-1], sfh[::-1], 128, 128)
    for key in ("log10_mstar", "log10_sfr"):
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], c[key][::-1])


def test_float32_histories_agree_with_float64():
    mah, sfh = _histories()
    a = _evaluate(36, "float32", mah, sfh, 512, 512)
    b = _evaluate(36, "float64", mah, sfh, 512, 512)
    assert np.max(np.abs(a["log10_mstar"] - b["log10_mstar"])) < 1e-4
    assert np.max(np.abs(a["log10_sfr"] - b["log10_sfr"])) < 1e-4


def test_history_integral_matches_diffstar():
    """The one-sum trapezoid is diffstar's cumulative_mstar_formed at t_obs (to 1e-6 dex:
    some histories differ by ~6e-8 dex, the kernels' float rounding); the SFR is the history
    at t_obs itself."""
    import jax
    import jax.numpy as jnp
    from diffmah.diffmah_kernels import DiffmahParams
    from diffstar.sfh_model import calc_sfh_singlegal
    from diffstar.utils import cumulative_mstar_formed

    mah, sfh = _histories(n=20)
    ours = _evaluate(50, "float64", mah, sfh, 32, 32)
    tarr = jnp.linspace(0.01, 13.8, 50)
    for i in range(len(mah)):
        with jax.enable_x64(True):
            hist = calc_sfh_singlegal(sfh[i], DiffmahParams(*mah[i]), tarr, lgt0=1.1399, fb=0.156)
            ref = np.log10(cumulative_mstar_formed(tarr, hist)[-1])
        assert ours["log10_mstar"][i] == pytest.approx(float(ref), abs=1e-6)
        assert ours["log10_sfr"][i] == pytest.approx(float(np.log10(hist[-1])), abs=1e-6)


def test_subhalo_table_per_host_matches_diffskys_per_satellite_draw():
    """The CDF table built once per host, inverted per satellite (``subhalo_lgmu``), gives
    diffsky's generate_subhalopop_kern draws to float rounding, ends included."""
    import jax
    import jax.numpy as jnp
    from diffsky.mass_functions.mc_subs import generate_subhalopop_kern

    registry.get_model("diffsky_sfh", {})  # 64-bit mode on, as in a box
    _, table, _, _ = kernels.build_draw_kernels()
    rng = np.random.default_rng(4)
    lgm = rng.uniform(10.5, 15.0, 256).astype(np.float32)
    u = rng.random(2048)
    u[:2] = [0.0, 1.0 - 2**-53]  # the ends of jax.random.uniform's [0, 1)
    row = rng.integers(0, len(lgm), len(u))
    kern = jax.jit(jax.vmap(lambda u, m: generate_subhalopop_kern(u, m, jnp.float32(10.5))))
    ref = np.asarray(kern(u, lgm[row]))
    t = table(lgm, {"lgmsub_min": jnp.float32(10.5)})
    ours = kernels.subhalo_lgmu(u, row, np.asarray(t["cdf"]), np.asarray(t["lgmu_cutoff"]))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-11)  # log10 mu near 0: cancellation


def test_registry_states_the_parameters_of_the_class_it_names():
    """The campaign loader checks model parameters against the registry, without importing the
    model: the table must list exactly the constructor's parameters."""
    for entry in registry.MODELS.values():
        cls = entry.load()
        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert tuple(names) == entry.parameters, entry.name
        assert (cls.name, cls.version) == (entry.name, entry.version)
