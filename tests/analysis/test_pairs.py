"""The 14 pairs, the one-call pairwise kernel against the float64 reference, and
the streamed full-depth CCA."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.analysis import cca, pairs, sampling
from jaxtransfer.data import preprocess
from jaxtransfer.models import resnet


def _tiny(seed):
    return pairs.Network(
        f"tiny{seed}",
        lambda: (resnet.ResNetTiny(num_classes=None, rngs=nnx.Rngs(seed)), "caffe"),
        f"seed {seed}",
    )


@pytest.fixture(scope="module")
def stimuli():
    # Smooth images give structured (not white-noise) activations.
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (120, 8, 8, 3)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2).astype(np.uint8)


def test_paper_pairs():
    got = pairs.paper_pairs("knee")
    assert len(got) == 14 == len(set(got))
    names = [(pairs.csv_name(a), pairs.csv_name(b)) for a, b in got]
    assert ("random", "random") in names
    assert ("knee-ImageNet-freezeFalse", "knee-RadImageNet-freezeFalse") in names
    assert ("knee-RadImageNet-freezeTrue", "RadImageNet") in names
    # 'random' is a fresh init, and random-random uses two independent ones.
    assert (pairs.RANDOM, pairs.SECOND_RANDOM) in got
    assert not any("random-freeze" in n for pair in got for n in pair)


def test_pairwise_kernel_equals_the_float64_reference_on_the_samples(stimuli):
    networks = {"a": _tiny(1), "b": _tiny(2), "c": _tiny(3)}
    model = networks["a"].load()[0]
    shapes = sampling.tap_shapes(model, 64, model.study_taps)
    plan = sampling.make_plan(shapes, len(stimuli), seed=(0, 1), repetitions=2)
    seen = {}
    result = pairs.paper_cca(
        networks,
        [("a", "b"), ("c", "a"), ("b", "c")],
        stimuli,
        plan,
        activations_hook=lambda acts, names: seen.update(acts=acts, names=names),
    )
    assert result.values.shape == (3, 5) and result.repetitions.shape == (2, 3, 5)
    assert not result.notes and np.all(np.isfinite(result.values))
    names = seen["names"]
    for t, tap in enumerate(plan.taps):
        acts = seen["acts"][tap]  # (reps, nets, N, d)
        assert acts.shape[2:] == (
            plan.num_datapoints(tap),
            plan.channels[tap].shape[1],
        )
        for rep in range(2):
            for p, (m1, m2) in enumerate(result.pairs):
                x = acts[rep, names.index(m1)]
                y = acts[rep, names.index(m2)]
                reference = cca.mean_cca_reference_numpy(x, y)
                assert result.repetitions[rep, p, t] == pytest.approx(
                    reference, abs=2e-5
                ), (tap, rep, m1, m2)
    np.testing.assert_allclose(result.values, result.repetitions.mean(0))


def _shared_sample(rng, num_points, latent_dim):
    """ReLU activations of 3 correlated "networks" on the same datapoints, 2
    repetitions of 16 channels: (reps, nets, N, d) float32."""
    latent = rng.standard_normal((2, 1, num_points, latent_dim))
    acts = latent @ rng.standard_normal((3, latent_dim, 16)) + rng.standard_normal(
        (2, 3, num_points, 16)
    )
    return np.maximum(acts, 0).astype(np.float32)


def test_both_kernels_take_every_decomposition():
    acts = _shared_sample(np.random.default_rng(7), 300, 4)
    first, second = np.array([0, 1, 2]), np.array([1, 2, 0])
    sampled = {
        d: np.asarray(
            pairs.pairwise_mean_cca(acts, first, second, decomposition=d).values
        )
        for d in cca.DECOMPOSITIONS
    }
    for decomposition in cca.DECOMPOSITIONS:
        np.testing.assert_allclose(sampled[decomposition], sampled["linalg"], atol=2e-6)
    assert np.ptp(sampled["linalg"]) > 1e-2  # the pairs really differ
    # The streamed sums of the full-depth path, all datapoints of repetition 0.
    nets, channels = acts.shape[1], acts.shape[3]
    acc = dict(
        shift=jnp.zeros((nets, channels)),
        count=jnp.zeros(()),
        total=jnp.zeros((nets, channels)),
        gram=jnp.zeros((nets, channels, channels)),
        cross=jnp.zeros((len(first), channels, channels)),
    )
    acc = pairs._accumulate(acc, acts[0], jnp.ones(300), first, second)
    streamed = {
        d: np.asarray(pairs.mean_cca_from_sums(acc, first, second, decomposition=d))
        for d in cca.DECOMPOSITIONS
    }
    for decomposition in cca.DECOMPOSITIONS:
        np.testing.assert_allclose(
            streamed[decomposition], streamed["linalg"], atol=2e-6
        )
    np.testing.assert_allclose(streamed["linalg"], sampled["linalg"][0], atol=2e-6)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_pairwise_kernel_equals_the_reference_on_either_path(monkeypatch, backend):
    # CPUs take the Gram product in the host's BLAS between two jitted programs,
    # accelerators run one program; both paths run here, on the CPU.
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(cca, "host_gram", mock.Mock(wraps=cca.host_gram))
    acts = _shared_sample(np.random.default_rng(9), 400, 5)
    first, second = np.array([0, 1, 2, 2]), np.array([1, 2, 0, 1])
    values = np.asarray(pairs.pairwise_mean_cca(acts, first, second).values)
    assert cca.host_gram.call_count == (backend == "cpu")
    for rep in range(2):
        for p, (a, b) in enumerate(zip(first, second)):
            reference = cca.mean_cca_reference_numpy(acts[rep, a], acts[rep, b])
            assert values[rep, p] == pytest.approx(reference, abs=2e-5)


def test_linearly_dependent_channels_are_counted_per_network_and_noted():
    rng = np.random.default_rng(11)
    acts = _shared_sample(rng, 200, 6)
    # Network 1, repetition 0: 3 channels become combinations of 2 others.
    acts[0, 1, :, -3:] = acts[0, 1, :, :2] @ rng.standard_normal((2, 3))
    first, second = np.array([0, 1]), np.array([1, 2])
    for decomposition in cca.DECOMPOSITIONS:
        result = pairs.pairwise_mean_cca(
            acts, first, second, decomposition=decomposition
        )
        np.testing.assert_array_equal(result.dependent, [[0, 3, 0], [0, 0, 0]])
    notes = pairs._dependence_notes("conv1", ["a", "b", "c"], result.dependent, 200)
    assert notes == [
        "conv1: b's sampled channels are linearly dependent (to float precision) in "
        "1 of 2 repetitions (up to 3 directions, 200 datapoints); jaxtransfer leaves "
        "those directions out, where the paper's float64 numerics keep them and can "
        "give NaN or correlations above 1"
    ]


def test_identical_models_have_cca_one_at_every_layer(stimuli):
    networks = {"a": _tiny(1), "a_again": _tiny(1), "b": _tiny(2)}
    model = networks["a"].load()[0]
    shapes = sampling.tap_shapes(model, 64, model.study_taps)
    plan = sampling.make_plan(shapes, len(stimuli), seed=(0, 2), repetitions=2)
    result = pairs.paper_cca(networks, [("a", "a_again"), ("a", "b")], stimuli, plan)
    np.testing.assert_allclose(result.values[0], 1.0, atol=1e-3)
    assert np.all(result.values[1] < 0.95)  # different inits are not identical


def test_too_few_datapoints_give_nan_with_a_note():
    networks = {"a": _tiny(1), "b": _tiny(2)}
    stimuli = np.zeros((10, 32, 32, 3), np.uint8) + 100
    model = networks["a"].load()[0]
    plan = sampling.make_plan(
        sampling.tap_shapes(model, 32, model.study_taps), 10, seed=(0,)
    )
    result = pairs.paper_cca(networks, [("a", "b")], stimuli, plan)
    assert np.isnan(result.values[0, -1])  # block4: 10 datapoints, 64 channels
    assert np.isnan(result.values[0, -2])  # block3: 40 datapoints, 64 channels
    assert np.all(np.isfinite(result.values[0, :-2]))
    assert [n.split(":")[0] for n in result.notes if "undefined" in n] == [
        "conv4_block1_out",
        "conv5_block1_out",
    ]
    # A constant image gives few distinct datapoints: dependent channels, noted.
    assert any("linearly dependent" in n for n in result.notes)


def test_full_depth_stream_equals_the_covariance_of_all_datapoints(stimuli):
    networks = {"a": _tiny(1), "b": _tiny(2), "a_again": _tiny(1)}
    images = stimuli[:40]
    pair_list = [("a", "b"), ("b", "a_again"), ("a", "a_again")]
    taps = ("conv1_relu", "conv2_block1_out", "conv3_block1_out")
    # A tiny budget forces one pass per tap; a batch that does not divide the
    # stimuli exercises the padding mask.
    result = pairs.full_depth_cca(
        networks,
        pair_list,
        images,
        taps,
        batch_size=16,
        memory_budget_bytes=1,
    )
    full = {}
    for name in ("a", "b"):
        model, _ = networks[name].load()
        _, acts = model(preprocess.caffe(jnp.asarray(images)), taps=taps)
        full[name] = {
            t: np.asarray(a).reshape(-1, a.shape[-1]) for t, a in acts.items()
        }
    for t, tap in enumerate(taps):
        expected = [
            cca.mean_cca_reference_numpy(full["a"][tap], full["b"][tap]),
            cca.mean_cca_reference_numpy(full["b"][tap], full["a"][tap]),
        ]
        np.testing.assert_allclose(result.values[:2, t], expected, atol=1e-4)
        assert result.values[2, t] == pytest.approx(1.0, abs=1e-3)
