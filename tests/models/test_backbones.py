"""Every network of the registry: the same door, the same kind of taps."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxtransfer import models

SIZE = 128


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_the_studys_five_taps_sit_at_strides_2_to_32(name):
    model = nnx.eval_shape(lambda: models.get(name)(num_classes=3, rngs=nnx.Rngs(0)))
    assert len(model.study_taps) == 5
    assert set(model.study_taps) <= set(model.all_taps)
    assert model.all_taps[-1] == "pooled"
    images = jax.ShapeDtypeStruct((2, SIZE, SIZE, 3), jnp.float32)
    logits, acts = nnx.eval_shape(lambda m, x: m(x, taps=m.all_taps), model, images)
    assert logits.shape == (2, 3)
    assert sorted(acts) == sorted(model.all_taps)
    # In network order: the feature maps never grow.
    maps = [acts[tap].shape[1] for tap in model.all_taps[:-1]]
    assert maps == sorted(maps, reverse=True), name
    assert acts["pooled"].shape == (2, model.num_features)
    sides = [acts[tap].shape[1] for tap in model.study_taps]
    # Keras's valid convolutions and pools round down a little below SIZE / stride.
    for side, stride in zip(sides, (2, 4, 8, 16, 32)):
        assert SIZE // stride - 4 <= side <= SIZE // stride, (name, sides)
    assert models.min_size(name) == model.min_size >= 32
    # A checkpoint's architecture record rebuilds the same network.
    rebuilt = nnx.eval_shape(
        lambda: models.ARCHITECTURES[models.architecture_name(model)](
            **model.architecture, num_classes=3, rngs=nnx.Rngs(0)
        )
    )
    assert nnx.graphdef(rebuilt) == nnx.graphdef(model)
