"""The vmapped ensemble reproduces sequential runs (tiny model, CPU).

Three members: two sources sharing one fold's data (20 train, 10 val) and a
third on a smaller fold (12 train, 7 val), batch 8, so step 2 of an epoch has
batches of 8 and 4 (two calls) and step 3 a batch of 4 for two members only.
Two stages at the paper's learning rates, with augmentation and head dropout; in the
head stage two members stop early and sit masked while the third trains on.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_data
from flax import nnx

from jaxtransfer import ensemble, fit, train
from jaxtransfer.data import augment
from jaxtransfer.models import resnet

STAGES = [
    fit.Stage("head", 1e-3, 3, "accuracy", 1, True, False, False),
    fit.Stage("finetune", 1e-5, 2, "loss", 30, False, True, True),
]
STEP_CONFIG = train.StepConfig(augment=augment.AugmentConfig())
KWARGS = dict(num_classes=2, step_config=STEP_CONFIG, batch_size=8, eval_batch_size=4)
SEEDS = (0, 1, 2)  # model seed per member ("source")
RNG_BASE = 4  # m1 improves in head epoch 2 (val acc 0 -> 0.2), m0, m2 stop
# Measured on CPU: history values agree to 2.1e-5, weights to 6.1e-5 (abs; the
# largest are pre-BatchNorm conv biases, see ensemble.py), lax.map 6.9e-6, 9.2e-5.
HISTORY_ATOL = 1e-4
WEIGHT_RTOL, WEIGHT_ATOL = 1e-3, 2e-4


@pytest.fixture(scope="module")
def datas():
    rng = np.random.default_rng(0)
    shared = {"train": tiny_data.split(rng, 20), "val": tiny_data.split(rng, 10)}
    own = {"train": tiny_data.split(rng, 12), "val": tiny_data.split(rng, 7)}
    return [shared, shared, own]


def _model(seed):
    return resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(seed))


def _rng(member):
    return jax.random.fold_in(jax.random.key(RNG_BASE), member)


def _weights(model):
    return jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))


def _without_timing(history):
    return [
        {k: v for k, v in r.items() if not k.startswith("timing/")} for r in history
    ]


def _run_ensemble(datas, directory, log=lambda name, record: None):
    members = [
        ensemble.Member(f"m{i}", _model(seed), data, _rng(i))
        for i, (seed, data) in enumerate(zip(SEEDS, datas, strict=True))
    ]
    checkpointer = fit.RunCheckpointer(directory)
    try:
        histories = ensemble.run_members(
            members, STAGES, checkpointer=checkpointer, log=log, **KWARGS
        )
    finally:
        checkpointer.close()
    return [m.model for m in members], [histories[m.name] for m in members]


@pytest.fixture(scope="module")
def sequential(datas, tmp_path_factory):
    results = []
    for i, (seed, data) in enumerate(zip(SEEDS, datas, strict=True)):
        model = _model(seed)
        checkpointer = fit.RunCheckpointer(tmp_path_factory.mktemp(f"seq{i}"))
        try:
            history = fit.run_stages(
                model, STAGES, data, rng=_rng(i), checkpointer=checkpointer, **KWARGS
            )
        finally:
            checkpointer.close()
        results.append((model, history))
    return results


@pytest.fixture(scope="module")
def uninterrupted(datas, tmp_path_factory):
    return _run_ensemble(datas, tmp_path_factory.mktemp("ensemble"))


def test_ensemble_equals_sequential_runs(sequential, uninterrupted):
    models, histories = uninterrupted
    epochs = []
    for (seq_model, seq_history), model, history in zip(
        sequential, models, histories, strict=True
    ):
        keys = [(r["stage"], r["epoch"]) for r in history]
        assert keys == [(r["stage"], r["epoch"]) for r in seq_history]
        epochs.append(keys)
        for expected, actual in zip(
            _without_timing(seq_history), _without_timing(history), strict=True
        ):
            assert actual.keys() == expected.keys()
            for key, value in expected.items():
                assert actual[key] == pytest.approx(value, abs=HISTORY_ATOL), key
        for a, b in zip(_weights(seq_model), _weights(model), strict=True):
            np.testing.assert_allclose(b, a, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
    # The runs are the intended test: members stop the head stage at different
    # epochs, so stopped members were masked while another one trained.
    head_epochs = [sum(stage == "head" for stage, _ in keys) for keys in epochs]
    assert len(set(head_epochs)) > 1, head_epochs
    assert min(head_epochs) < STAGES[0].num_epochs


@pytest.mark.parametrize("backend, vmapped", [("cpu", True), ("gpu", False)])
def test_ensemble_mode_by_platform(monkeypatch, backend, vmapped):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert ensemble.vectorize_by_default() is vmapped


def test_masked_member_is_untouched_and_lax_map_matches_the_step(datas):
    data = datas[0]["train"]
    states = []
    for seed in SEEDS:
        graphdef, state = train.create_state(
            _model(seed), STEP_CONFIG.optimizer, nnx.Param
        )
        states.append(state)
    indices = np.stack([np.arange(8), np.arange(8) + 4, np.arange(8) + 12])
    rngs = [jax.random.key(i) for i in range(3)]
    active = np.array([True, False, True])
    single, _ = train.make_steps(graphdef, 2, STEP_CONFIG)
    for vectorize in (True, False):
        step, _ = ensemble.make_ensemble_steps(graphdef, 2, STEP_CONFIG, vectorize)
        stacked = ensemble.stack(states)  # fresh buffers: the step donates them
        new, sums = step(
            stacked, data.images, data.labels, indices, jnp.stack(rngs), active
        )
        for a, b in zip(
            jax.tree.leaves(states[1]),
            jax.tree.leaves(ensemble.unstack(new, 1)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
        assert float(sums["count"][1]) == 0.0 and float(sums["loss"][1]) == 0.0
        for m in (0, 2):
            expected, expected_sums = single(
                jax.tree.map(jnp.copy, states[m]),
                data.images,
                data.labels,
                jnp.asarray(indices[m]),
                rngs[m],
            )
            assert float(sums["loss"][m]) == pytest.approx(
                float(expected_sums["loss"]), rel=1e-5
            )
            actual = ensemble.unstack(new, m)
            # Weights with a real gradient; pre-BatchNorm conv biases have none
            # (rounding noise, which Adam scales up to +-lr; see ensemble.py).
            for path, a in jax.tree_util.tree_leaves_with_path(expected.trainable):
                name = jax.tree_util.keystr(path)
                if "conv" in name and "bias" in name:
                    continue
                b = dict(jax.tree_util.tree_leaves_with_path(actual.trainable))[path]
                np.testing.assert_allclose(b, a, atol=2 * STEP_CONFIG.learning_rate)


class _Killed(Exception):
    pass


def _kill_after(name, stage, epoch):
    def log(member, record):
        if (member, record["stage"], record["epoch"]) == (name, stage, epoch):
            raise _Killed

    return log


def test_resume_after_interruptions_gives_the_same_ensemble(
    datas, uninterrupted, tmp_path
):
    # Killed mid-way through an epoch's logs, before its checkpoint: it reruns.
    # The first kill is in head epoch 3, which m1 trains alone (m0, m2 masked).
    for where in [("m1", "head", 3), ("m2", "finetune", 1)]:
        with pytest.raises(_Killed):
            _run_ensemble(datas, tmp_path, log=_kill_after(*where))
    models, histories = _run_ensemble(datas, tmp_path)
    reference_models, reference_histories = uninterrupted
    for history, reference in zip(histories, reference_histories, strict=True):
        assert _without_timing(history) == _without_timing(reference)
    for model, reference in zip(models, reference_models, strict=True):
        for a, b in zip(_weights(reference), _weights(model), strict=True):
            np.testing.assert_array_equal(a, b)
