"""Stages, early stopping, checkpoints and resume of one run (tiny model, CPU)."""

import jax
import numpy as np
import pytest
import tiny_data
from flax import nnx

from jaxtransfer import fit, train
from jaxtransfer.models import resnet


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"train": tiny_data.split(rng, 20), "val": tiny_data.split(rng, 10)}


STAGES = [
    fit.Stage("head", 1e-3, 2, "accuracy", 10, True, False, False),
    fit.Stage("finetune", 1e-3, 3, "loss", 30, False, True, True),
]


def _without_timing(history):
    return [
        {k: v for k, v in r.items() if not k.startswith("timing/")} for r in history
    ]


def _run(data, directory, stages=STAGES, log=lambda record: None):
    model = resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    checkpointer = fit.RunCheckpointer(directory)
    try:
        history = fit.run_stages(
            model,
            stages,
            data,
            num_classes=2,
            step_config=train.StepConfig(),
            batch_size=10,
            eval_batch_size=10,
            rng=jax.random.key(0),
            checkpointer=checkpointer,
            log=log,
        )
    finally:
        checkpointer.close()
    return model, history


class _Killed(Exception):
    pass


def _kill_after(stage, epoch):
    def log(record):
        if (record["stage"], record["epoch"]) == (stage, epoch):
            raise _Killed

    return log


def test_resume_after_interruptions_gives_the_same_run(data, tmp_path):
    reference, reference_history = _run(data, tmp_path / "uninterrupted")
    # Killed right after an epoch's log, before its checkpoint: that epoch reruns.
    for where in [("head", 1), ("finetune", 2)]:
        with pytest.raises(_Killed):
            _run(data, tmp_path / "interrupted", log=_kill_after(*where))
    resumed, history = _run(data, tmp_path / "interrupted")
    assert _without_timing(history) == _without_timing(reference_history)
    assert [(r["stage"], r["epoch"]) for r in history] == [
        ("head", 1),
        ("head", 2),
        ("finetune", 1),
        ("finetune", 2),
        ("finetune", 3),
    ]
    expected = nnx.state(reference, (nnx.Param, nnx.BatchStat))
    actual = nnx.state(resumed, (nnx.Param, nnx.BatchStat))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
        np.testing.assert_array_equal(a, b)
    # A finished run resumes to the same final weights without training again.
    again, history = _run(data, tmp_path / "interrupted", log=_kill_after("head", 1))
    assert _without_timing(history) == _without_timing(reference_history)
    for a, b in zip(
        jax.tree.leaves(expected),
        jax.tree.leaves(nnx.state(again, (nnx.Param, nnx.BatchStat))),
    ):
        np.testing.assert_array_equal(a, b)


def test_head_stage_leaves_backbone_and_batchnorm_untouched(data, tmp_path):
    head_stage = [fit.Stage("head", 1e-2, 2, "accuracy", 10, True, False, False)]
    before = resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    after, _ = _run(data, tmp_path / "head", stages=head_stage)
    for name in ("conv1_conv", "conv3_block1"):
        for a, b in zip(
            jax.tree.leaves(nnx.state(getattr(before, name))),
            jax.tree.leaves(nnx.state(getattr(after, name))),
        ):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(
        before.head.kernel.get_value(), after.head.kernel.get_value()
    )


@pytest.mark.parametrize("keep_best", [True, False])
def test_stage_ends_on_best_or_last_validation_weights(data, tmp_path, keep_best):
    # A learning rate high enough that the last epoch is not the best one.
    stages = [fit.Stage("finetune", 5e-3, 4, "loss", 30, False, True, keep_best)]
    records = []
    model, history = _run(data, tmp_path / "best", stages=stages, log=records.append)
    best = int(np.argmin([r["val/loss"] for r in history]))
    assert best != len(history) - 1
    best = best if keep_best else -1
    # Re-evaluating the final weights gives the best (or last) epoch's val loss.
    graphdef, state = train.create_state(model, train.optax.identity(), nnx.Param)
    _, eval_step = train.make_steps(graphdef, 2, train.StepConfig())
    val, _ = train.evaluate(eval_step, state, data["val"].images, data["val"].labels, 4)
    assert val["loss"] == pytest.approx(history[best]["val/loss"], rel=1e-5)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    data, tmp_path
):
    stages = [
        STAGES[0],
        fit.Stage("finetune", float("nan"), 3, "loss", 30, False, True, True),
    ]
    with pytest.raises(fit.NonFiniteLoss, match="stage finetune, epoch 1"):
        _run(data, tmp_path / "nan", stages=stages)
    checkpointer = fit.RunCheckpointer(tmp_path / "nan")
    progress = checkpointer.progress()
    checkpointer.close()
    assert progress["stage"] == 0 and progress["stage_done"]


def test_early_stopping_follows_keras():
    stopper = train.EarlyStopping("min", patience=2)
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
    maximise = train.EarlyStopping("max", patience=1)
    assert maximise.update(0.5, 0) == (True, False)
    assert maximise.update(0.5, 1) == (False, True)  # equal is no improvement
