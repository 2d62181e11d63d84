"""The engine on one device (tiny model, CPU): stages, members, slots, resume.

A single run is an ensemble of one; several runs train as members of one step.
Members are compared with each run trained alone. Programs compiled differently
(more slots, vmapped members) may round differently, so those comparisons use
tolerances derived from float32 arithmetic, while anything that must be exact
(resume, a masked member, the same program) is compared bit for bit.
"""

import jax
import numpy as np
import pytest
import sklearn.metrics
import tiny_data
from flax import nnx

from jaxtransfer.data import augment
from jaxtransfer.models import resnet
from jaxtransfer.training import engine, metrics, steps
from jaxtransfer.training.checkpoint import RunCheckpointer

EPS = float(np.finfo(np.float32).eps)
# The largest float32 reduction of the tiny model at 32 px, batch 8: BatchNorm's
# statistics over 8 x 16 x 16 positions. Differently compiled programs may sum it
# in another order: relative error up to about n * eps on the metrics.
METRIC_RTOL = 8 * 16 * 16 * EPS

STAGES = [
    engine.Stage("head", 1e-3, 3, "accuracy", 1, True, False, False),
    engine.Stage("finetune", 1e-5, 2, "loss", 30, False, True, True),
]
STEP_CONFIG = steps.StepConfig(augment=augment.AugmentConfig())
SEEDS = (0, 1, 2)  # model seed per member ("source")
RNG_BASE = 4  # m1 improves in head epoch 2 (val acc 0 -> 0.2), m0, m2 stop


@pytest.fixture(scope="module")
def datas():
    """Two members share a fold (20 train, 10 val), the third has its own (12, 7),
    so step 2 of an epoch has batches of 8 and 4 and step 3 only two members."""
    rng = np.random.default_rng(0)
    shared = {"train": tiny_data.split(rng, 20), "val": tiny_data.split(rng, 10)}
    own = {"train": tiny_data.split(rng, 12), "val": tiny_data.split(rng, 7)}
    return [shared, shared, own]


def _model(seed, num_classes=2):
    return resnet.ResNetTiny(num_classes=num_classes, rngs=nnx.Rngs(seed))


def _weights(model):
    return jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))


def _without_timing(history):
    return [
        {k: v for k, v in r.items() if not k.startswith("timing/")} for r in history
    ]


class _Recorder(engine.Callbacks):
    def __init__(self, kill_at=None):
        self.kill_at, self.finished_runs = kill_at, {}

    def epoch(self, run, record):
        if (run.name, record["stage"], record["epoch"]) == self.kill_at:
            raise _Killed

    def finished(self, run, history, test, probs):
        self.finished_runs[run.name] = (test, probs)


class _Killed(Exception):
    pass


def _train(datas, directory=None, stages=STAGES, callbacks=None, members=None,
           cohort=None, **settings):  # fmt: skip
    """Trains the members ``members`` (default all) of ``datas`` together."""
    members = range(len(datas)) if members is None else members
    runs = [
        engine.Run(
            f"m{i}",
            _model(SEEDS[i]),
            datas[i],
            jax.random.fold_in(jax.random.key(RNG_BASE), i),
            None if directory is None else directory / f"m{i}",
        )
        for i in members
    ]
    settings = engine.Settings(
        batch_size=8, eval_batch_size=4, checkpoint_every_s=0, progress=False,
        **settings,
    )  # fmt: skip
    histories = engine.train(
        runs, stages, num_classes=2, step_config=STEP_CONFIG, settings=settings,
        callbacks=callbacks, cohort=cohort,
    )  # fmt: skip
    return [r.model for r in runs], [histories[r.name] for r in runs]


@pytest.fixture(scope="module")
def alone(datas):
    """Each run trained as an ensemble of one."""
    return [_train(datas, members=[i]) for i in range(len(datas))]


@pytest.fixture(scope="module")
def together(datas, tmp_path_factory):
    return _train(datas, tmp_path_factory.mktemp("together"))


def _assert_same_runs(actual, expected, exact):
    models, histories = actual
    expected_models, expected_histories = expected
    for history, reference in zip(histories, expected_histories, strict=True):
        assert [(r["stage"], r["epoch"]) for r in history] == [
            (r["stage"], r["epoch"]) for r in reference
        ]
        for got, want in zip(_without_timing(history), _without_timing(reference)):
            for key, value in want.items():
                if exact or isinstance(value, str):
                    assert got[key] == value, key
                else:
                    assert got[key] == pytest.approx(value, rel=METRIC_RTOL), key
    steps_taken = 3 * 3 + 2 * 3  # at most: epochs x steps per epoch
    for model, reference in zip(models, expected_models, strict=True):
        for a, b in zip(_weights(reference), _weights(model), strict=True):
            if exact:
                np.testing.assert_array_equal(b, a)
            else:
                # Adam moves a weight by at most about lr a step, whatever the
                # gradient's rounding: a bound that does not depend on the machine.
                np.testing.assert_allclose(b, a, atol=2 * 1e-3 * steps_taken)


def test_members_train_as_each_run_alone(alone, together):
    expected = ([m[0][0] for m in alone], [m[1][0] for m in alone])
    _assert_same_runs(together, expected, exact=False)
    # The runs are the intended test: members stop the head stage at different
    # epochs, so stopped members were skipped while another one trained.
    head_epochs = [sum(r["stage"] == "head" for r in h) for h in together[1]]
    assert len(set(head_epochs)) > 1, head_epochs
    assert min(head_epochs) < STAGES[0].num_epochs


def test_lax_map_members_are_the_loops_bit_for_bit(datas, together):
    _assert_same_runs(_train(datas, member_mode="map"), together, exact=True)


def test_vmapped_members_match_to_rounding(datas, together):
    _assert_same_runs(_train(datas, member_mode="vmap"), together, exact=False)


def test_a_stopped_members_slot_goes_to_the_next_run(datas, together):
    # One slot: the runs take it in turn, each stage as a queue.
    _assert_same_runs(_train(datas, slots_per_device=1), together, exact=False)


def test_resume_after_interruptions_gives_the_same_runs(datas, together, tmp_path):
    # Killed in head epoch 3, which m1 trains alone, then in m2's first fine-tuning
    # epoch; each time the epoch in flight reruns from the last checkpoint.
    for kill_at in [("m1", "head", 3), ("m2", "finetune", 1)]:
        with pytest.raises(_Killed):
            _train(datas, tmp_path, callbacks=_Recorder(kill_at))
    resumed = _train(datas, tmp_path)
    _assert_same_runs(resumed, together, exact=True)


class _KilledWhenFinished(_Recorder):
    """Killed as ``name`` finishes, after the runs before it wrote their results."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def finished(self, run, history, test, probs):
        if run.name == self.name:
            raise _Killed
        super().finished(run, history, test, probs)


def test_runs_resumed_without_their_finished_cohort_are_bit_for_bit(
    datas, together, tmp_path, monkeypatch
):
    # Killed between results: m0 finished; m1 and m2 resume from their last saves
    # in other slots, in the mesh and slots sized for the three (their cohort): on
    # several devices two runs alone would take other devices.
    recorder = _KilledWhenFinished("m1")
    with pytest.raises(_Killed):
        _train(datas, tmp_path, callbacks=recorder)
    assert list(recorder.finished_runs) == ["m0"]
    meshes = []
    make_mesh = engine.mesh_lib.make_mesh
    monkeypatch.setattr(
        engine.mesh_lib, "make_mesh",
        lambda members, *args: meshes.append(members) or make_mesh(members, *args),
    )  # fmt: skip
    resumed = _train(datas, tmp_path, members=[1, 2], cohort=3)
    assert meshes == [3]
    _assert_same_runs(resumed, (together[0][1:], together[1][1:]), exact=True)
    with pytest.raises(ValueError, match="cohort=1: expected at least the 3 runs"):
        _train(datas, cohort=1)


def test_head_stage_leaves_backbone_and_batchnorm_untouched(datas):
    head_stage = [engine.Stage("head", 1e-2, 2, "accuracy", 10, True, False, False)]
    before = _model(SEEDS[0])
    (after,), _ = _train(datas, stages=head_stage, members=[0])
    for name in ("conv1_conv", "conv3_block1"):
        for a, b in zip(
            jax.tree.leaves(nnx.state(getattr(before, name))),
            jax.tree.leaves(nnx.state(getattr(after, name))),
        ):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(
        before.head.kernel.get_value(), after.head.kernel.get_value()
    )


def _binary_auc(labels, probs):
    return float(sklearn.metrics.roc_auc_score(labels, probs[:, 1]))


@pytest.mark.parametrize("keep_best", [True, False])
def test_stage_ends_on_best_or_last_weights_and_tests_them(datas, keep_best):
    # A learning rate high enough that the last epoch is not the best one; the
    # validation split doubles as the test split, so the test result is the
    # chosen epoch's validation result, through the same evaluation path.
    stages = [engine.Stage("finetune", 1e-2, 4, "loss", 30, False, True, keep_best)]
    data = dict(datas[0], test=datas[0]["val"])
    recorder = _Recorder()
    (model,), (history,) = _train(
        [data], stages=stages, callbacks=recorder, val_auc=_binary_auc
    )
    best = int(np.argmin([r["val/loss"] for r in history]))
    assert best != len(history) - 1
    chosen = history[best if keep_best else -1]
    test, probs = recorder.finished_runs["m0"]
    assert test["loss"] == chosen["val/loss"]
    # The epoch's validation AUC was scored on that epoch's probabilities.
    assert chosen["val/auc"] == _binary_auc(np.asarray(data["val"].labels), probs)
    # The probabilities are the final model's, every example once, in order
    # (eval batch 4 over 10 examples: the last batch is half padding).
    logits, _ = model(
        steps.preprocess.caffe(np.asarray(data["val"].images, np.float32))
    )
    assert probs.shape == (10, 2)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits), rtol=1e-5, atol=1e-6)
    expected = metrics.softmax_cross_entropy(
        logits, jax.nn.one_hot(np.asarray(data["val"].labels), 2)
    ).mean()
    assert test["loss"] == pytest.approx(float(expected), rel=METRIC_RTOL)


class _Failures(_Recorder):
    def __init__(self):
        super().__init__()
        self.failures = {}

    def failed(self, run, history, failure):
        self.failures[run.name] = (len(history), failure)


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(
    datas, tmp_path
):
    stages = [
        STAGES[0],
        engine.Stage("finetune", float("nan"), 3, "loss", 30, False, True, True),
    ]
    recorder = _Failures()
    (_,), (history,) = _train(
        datas, tmp_path, stages=stages, members=[0], callbacks=recorder
    )
    good, failure = recorder.failures["m0"]
    assert failure["stage"] == "finetune" and failure["epoch"] == 1
    assert not np.isfinite(failure["train/loss"])
    assert good == len(history) > 0  # its good epochs, all of the head stage
    assert {r["stage"] for r in history} == {"head"}
    assert recorder.finished_runs == {}
    checkpointer = RunCheckpointer(tmp_path / "m0", "m0")
    progress = checkpointer.progress()
    checkpointer.close()
    assert progress["stage"] == 0 and progress["stage_done"]


def test_a_diverging_member_leaves_the_others_as_they_train(datas, together):
    """One member's weights overflow (loss NaN from its first step); the member
    beside it trains bit for bit as it does beside the others."""
    runs = [
        engine.Run(
            f"m{i}", _model(SEEDS[i]), datas[i],
            jax.random.fold_in(jax.random.key(RNG_BASE), i),
        )
        for i in (0, 2)
    ]  # fmt: skip
    params = nnx.state(runs[0].model, nnx.Param)
    nnx.update(runs[0].model, jax.tree.map(lambda x: x * 1e30, params))
    recorder = _Failures()
    histories = engine.train(
        runs, STAGES, num_classes=2, step_config=STEP_CONFIG,
        settings=engine.Settings(batch_size=8, eval_batch_size=4, progress=False),
        callbacks=recorder, cohort=3,  # the programs of ``together``
    )  # fmt: skip
    assert recorder.failures["m0"][1]["stage"] == STAGES[0].name
    assert recorder.failures["m0"][1]["epoch"] == 1
    assert histories["m0"] == []
    assert list(recorder.finished_runs) == ["m2"]
    expected = ([together[0][2]], [together[1][2]])
    _assert_same_runs(([runs[1].model], [histories["m2"]]), expected, exact=True)


def test_runs_of_different_architectures_are_refused(datas):
    runs = [
        engine.Run("a", _model(0), datas[0], jax.random.key(0)),
        engine.Run("b", _model(0, num_classes=3), datas[0], jax.random.key(0)),
    ]
    with pytest.raises(ValueError, match="one architecture"):
        engine.train(
            runs, STAGES, num_classes=2, step_config=STEP_CONFIG,
            settings=engine.Settings(8, 4),
        )  # fmt: skip


def test_early_stopping_follows_keras():
    stopper = engine.EarlyStopping("min", patience=2)
    outcomes = [
        stopper.update(v, e) for e, v in enumerate([5.0, 4.0, 4.0, 3.0, 3.5, 3.2])
    ]
    assert outcomes == [
        (True, False),
        (True, False),
        (False, False),
        (True, False),
        (False, False),
        (False, True),
    ]
    assert stopper.best == 3.0 and stopper.best_epoch == 3
    maximise = engine.EarlyStopping("max", patience=1)
    assert maximise.update(0.5, 0) == (True, False)
    assert maximise.update(0.5, 1) == (False, True)  # equal is no improvement


@pytest.mark.parametrize("platform, mode", [("cpu", "loop"), ("gpu", "map")])
def test_member_mode_by_platform(monkeypatch, platform, mode):
    mesh = type("Mesh", (), {})()
    mesh.devices = np.asarray([type("Device", (), {"platform": platform})()])
    assert engine.default_member_mode(mesh) == mode
