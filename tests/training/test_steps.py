"""One member's step math: purity, bfloat16 compute, remat, the sigmoid head."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtransfer.models import resnet
from jaxtransfer.training import optim, steps


def _steps(graphdef, num_classes, config):
    """The member steps, jitted alone (the engine runs them over slots)."""
    static = dict(graphdef=graphdef, num_classes=num_classes, config=config)
    train_step = jax.jit(functools.partial(steps.train_step, **static))
    eval_step = jax.jit(functools.partial(steps.eval_step, **static))
    return train_step, eval_step


def _evaluate(eval_step, state, images, labels):
    """Mean loss and probabilities of the whole split as one masked batch."""
    mask = jnp.ones(len(labels), bool)
    sums, probs = eval_step(
        state.weights, images, labels, jnp.arange(len(labels)), mask
    )
    return {"loss": float(sums["loss"] / sums["count"])}, probs


def _data(n=10):
    rng = np.random.default_rng(0)
    labels = jnp.asarray(rng.integers(0, 2, n), jnp.int32)
    images = jnp.asarray(rng.integers(0, 256, (n, 32, 32, 3)), jnp.uint8)
    return images, labels


def test_train_step_is_pure_and_bfloat16_keeps_float32_master_weights():
    images, labels = _data()
    model = resnet.ResNetTiny(num_classes=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    _, acts = model(jnp.ones((1, 32, 32, 3)))
    assert acts["pooled"].dtype == jnp.bfloat16
    config = steps.StepConfig(learning_rate=1e-3, compute_dtype="bfloat16")
    graphdef, state = steps.create_state(model, optim.keras_adam(1e-3), nnx.Param)
    step, _ = _steps(graphdef, 2, config)
    before = jax.tree.map(np.asarray, state.trainable)
    indices = jnp.arange(4)
    new_a, sums_a = step(
        jax.tree.map(jnp.copy, state), images, labels, indices, jax.random.key(0)
    )
    new_b, sums_b = step(state, images, labels, indices, jax.random.key(0))
    assert float(sums_a["loss"]) == float(sums_b["loss"])
    assert np.isfinite(float(sums_a["loss"]))
    leaves = jax.tree.leaves(new_a.trainable)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(before), leaves)]
    assert max(moved) > 0


def test_remat_gives_the_same_gradients():
    rng = np.random.default_rng(2)
    batch = jnp.asarray(rng.normal(0, 50, (16, 64, 64, 3)), jnp.float32)
    onehot = jax.nn.one_hot(rng.integers(0, 2, 16), 2)
    model = resnet.ResNetTiny(num_classes=2, rngs=nnx.Rngs(3))
    graphdef, state = steps.create_state(model, optim.keras_adam(1e-3), nnx.Param)
    results = []
    for remat in (False, True):
        config = steps.StepConfig(remat=remat)
        grads_fn = functools.partial(
            steps.loss_and_grads, graphdef=graphdef, config=config
        )
        results.append(jax.jit(grads_fn)(state, batch, onehot, jax.random.key(4)))
    (plain_aux, plain_grads), (remat_aux, remat_grads) = jax.device_get(results)
    for plain, remat in zip(jax.tree.leaves(plain_aux), jax.tree.leaves(remat_aux)):
        np.testing.assert_allclose(remat, plain, rtol=1e-5, atol=1e-6)
    scale = max(np.abs(g).max() for g in jax.tree.leaves(plain_grads))
    for plain, remat in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads)):
        np.testing.assert_allclose(remat, plain, rtol=1e-4, atol=1e-5 * scale)


def test_remat_keeps_only_block_inputs_for_the_backward_pass():
    model = resnet.ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = jnp.zeros((16, 64, 64, 3))
    residual_bytes = []
    for remat in (False, True):

        def loss(params, remat=remat):
            net = nnx.merge(graphdef, params, rest, copy=True)
            logits, _ = net(
                batch, train=True, dropout_rng=jax.random.key(0), remat=remat
            )
            return logits.sum()

        # The backward function's leaves are what autodiff keeps (shapes only).
        backward = jax.eval_shape(lambda p, f=loss: jax.vjp(f, p)[1], params)
        residual_bytes.append(
            sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(backward))
        )
    assert residual_bytes[1] < 0.5 * residual_bytes[0], residual_bytes


def test_one_unit_sigmoid_head_is_scored_against_class_one():
    # The v1 preset's binary head: Dense(1, sigmoid), BinaryCrossentropy on 0/1
    # labels. Its loss must be -[y log p + (1 - y) log(1 - p)] with p = P(class 1).
    images, labels = _data(n=10)
    model = resnet.ResNetTiny(num_classes=1, rngs=nnx.Rngs(1))
    graphdef, state = steps.create_state(model, optim.keras_adam(1e-3), nnx.Param)
    config = steps.StepConfig(loss="sigmoid_bce")
    _, eval_step = _steps(graphdef, 1, config)
    result, probs = _evaluate(eval_step, state, images, labels)
    p = np.asarray(probs[:, 1], np.float64)
    y = np.asarray(labels)
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-4)
    # A train step lowers that loss on its batch (the gradient points the right way).
    fast = steps.StepConfig(loss="sigmoid_bce", learning_rate=1e-3)
    train_step, _ = _steps(graphdef, 1, fast)
    indices = jnp.arange(10)
    for _ in range(5):
        state, _ = train_step(state, images, labels, indices, jax.random.key(0))
    after, _ = _evaluate(eval_step, state, images, labels)
    assert after["loss"] < result["loss"]
