"""Tests of the ResNet model: structure, taps, heads and modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtransfer import models
from jaxtransfer.models import resnet


def test_resnet50_parameter_count_matches_keras():
    # keras.applications.ResNet50(include_top=False): 23,587,712 parameters, of which
    # 53,120 are BatchNorm moving statistics (non-trainable).
    model = resnet.ResNet50(rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    stats = nnx.state(model, nnx.BatchStat)
    count = lambda s: sum(x.size for x in jax.tree.leaves(s))  # noqa: E731
    assert count(params) == 23_587_712 - 53_120
    assert count(stats) == 53_120


@pytest.mark.parametrize(
    "size, expected",
    [(96, (48, 24, 12, 6, 3)), (112, (56, 28, 14, 7, 4)), (224, (112, 56, 28, 14, 7))],
)
def test_tap_spatial_sizes_follow_protocol(size, expected):
    model = resnet.ResNet50(rngs=nnx.Rngs(0))
    shapes = jax.eval_shape(lambda x: model(x)[1], jnp.zeros((1, size, size, 3)))
    assert [shapes[t].shape[1] for t in resnet.STUDY_TAPS] == list(expected)
    assert [shapes[t].shape[-1] for t in resnet.STUDY_TAPS] == [
        64,
        256,
        512,
        1024,
        2048,
    ]
    assert shapes["pooled"].shape == (1, 2048)


def test_all_sixteen_block_outputs_on_request():
    model = resnet.ResNet50(rngs=nnx.Rngs(0))
    shapes = jax.eval_shape(
        lambda x: model(x, taps=model.all_taps)[1], jnp.zeros((1, 64, 64, 3))
    )
    blocks = [name for name in shapes if name.endswith("_out")]
    assert len(blocks) == 16
    assert blocks[0] == "conv2_block1_out" and blocks[-1] == "conv5_block3_out"
    with pytest.raises(ValueError, match="unknown taps"):
        model(jnp.zeros((1, 64, 64, 3)), taps=["conv6_block1_out"])


def test_head_dropout_only_in_training():
    model = resnet.ResNetTiny(num_classes=3, head_dropout=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    eval_a, _ = model(x)
    eval_b, _ = model(x)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a, _ = model(x, train=True, bn_train=False, dropout_rng=jax.random.key(0))
    train_b, _ = model(x, train=True, bn_train=False, dropout_rng=jax.random.key(1))
    again, _ = model(x, train=True, bn_train=False, dropout_rng=jax.random.key(1))
    assert eval_a.shape == (4, 3)
    assert not np.allclose(train_a, train_b)  # masks follow the key
    np.testing.assert_array_equal(train_b, again)
    # Inverted dropout keeps the expectation: half the features, doubled.
    assert np.abs(train_a - eval_a).max() > 1e-3


def test_training_mode_updates_batchnorm_statistics_with_keras_momentum():
    model = resnet.ResNetTiny(rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (8, 32, 32, 3)) * 3 + 1
    before = np.asarray(model.conv1_bn.mean.get_value())
    model(x)  # inference: statistics untouched
    np.testing.assert_array_equal(model.conv1_bn.mean.get_value(), before)
    features = model.conv1_conv(jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0))))
    model(x, bn_train=True)
    expected = 0.99 * before + 0.01 * np.asarray(features.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(
        model.conv1_bn.mean.get_value(), expected, rtol=1e-5, atol=1e-6
    )


def test_variants_differ_in_stride_placement_and_conv_bias():
    keras = resnet.ResNetTiny(variant="keras", rngs=nnx.Rngs(0))
    torch = resnet.ResNetTiny(variant="torchvision", rngs=nnx.Rngs(0))
    assert keras.conv3_block1.conv1.strides == (2, 2)
    assert keras.conv3_block1.conv2.strides == (1, 1)
    assert torch.conv3_block1.conv1.strides == (1, 1)
    assert torch.conv3_block1.conv2.strides == (2, 2)
    assert keras.conv1_conv.bias is not None and torch.conv1_conv.bias is None
    assert keras.conv1_bn.epsilon == pytest.approx(1.001e-5)
    assert torch.conv1_bn.epsilon == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="variant"):
        resnet.ResNetTiny(variant="v2", rngs=nnx.Rngs(0))


def test_the_registry_builds_named_models_and_refuses_unknown_names():
    assert models.get("resnet50") is resnet.ResNet50
    tiny = models.get("tiny")(num_classes=3, rngs=nnx.Rngs(0))
    assert tiny.stage_sizes == (1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"'resnet5': expected one of \[.*'resnet50'"):
        models.get("resnet5")
