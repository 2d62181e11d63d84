"""The paper's CCA sampling: counts per tap, shared channels, seeding, contents."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.analysis import sampling
from jaxtransfer.data import preprocess
from jaxtransfer.models import resnet

# The paper's sampling (docs/protocol.md#cca): n_img per tap (conv1, block1..block4).
PAPER_NUM_IMAGES = {
    96: (4, 17, 69, 278, 1111),
    112: (3, 13, 51, 204, 625),
    224: (1, 3, 13, 51, 204),
}
PAPER_DATAPOINTS = {
    96: (9216, 9792, 9936, 10008, 9999),
    112: (9408, 10192, 9996, 9996, 10000),
    224: (12544, 9408, 10192, 9996, 9996),
}


@pytest.fixture(scope="module")
def resnet50():
    # Shapes only: an abstract model skips initialising 25M parameters.
    return nnx.eval_shape(lambda: resnet.ResNet50(num_classes=None, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("size", sorted(PAPER_NUM_IMAGES))
def test_images_and_datapoints_per_tap_match_the_protocol(resnet50, size):
    shapes = sampling.tap_shapes(resnet50, size, resnet50.study_taps)
    assert [c for _, _, c in shapes.values()] == [64, 256, 512, 1024, 2048]
    plan = sampling.make_plan(shapes, 100_000, seed=(0, 1), repetitions=1)
    assert tuple(plan.num_images.values()) == PAPER_NUM_IMAGES[size]
    assert tuple(plan.num_datapoints(t) for t in plan.taps) == PAPER_DATAPOINTS[size]
    assert [plan.channels[t].shape for t in plan.taps] == [(1, 64)] * 5


def test_image_count_is_capped_by_the_stimuli(resnet50):
    shapes = sampling.tap_shapes(resnet50, 224, resnet50.study_taps)
    plan = sampling.make_plan(shapes, 72, seed=(0, 1))  # thyroid's test split
    assert tuple(plan.num_images.values()) == (1, 3, 13, 51, 72)
    assert plan.image_order.shape == (5, 72)
    for row in plan.image_order:  # a sample without replacement per repetition
        assert len(set(row.tolist())) == 72


def test_plans_are_seeded_fresh_per_repetition_and_without_replacement():
    shapes = {"a": (4, 4, 256), "b": (2, 2, 32)}
    plan = sampling.make_plan(shapes, 500, seed=(3, 2))
    again = sampling.make_plan(shapes, 500, seed=(3, 2))
    other = sampling.make_plan(shapes, 500, seed=(3, 1))
    np.testing.assert_array_equal(plan.image_order, again.image_order)
    np.testing.assert_array_equal(plan.channels["a"], again.channels["a"])
    assert not np.array_equal(plan.image_order, other.image_order)
    assert plan.channels["a"].shape == (5, 64)
    for rep in plan.channels["a"]:
        assert len(set(rep.tolist())) == 64 and rep.max() < 256
    # Fresh samples: the repetitions differ from each other.
    assert len({tuple(r) for r in plan.channels["a"]}) == 5
    assert len({tuple(r) for r in plan.image_order}) == 5
    # d = all channels where C <= 64.
    np.testing.assert_array_equal(plan.channels["b"], np.tile(np.arange(32), (5, 1)))
    assert plan.describe()["seed"] == [3, 2]


def test_sampled_activations_are_the_plan_images_and_channels_of_a_forward_pass():
    model = resnet.ResNetTiny(num_classes=None, rngs=nnx.Rngs(1))
    other = resnet.ResNetTiny(num_classes=None, rngs=nnx.Rngs(2))
    rng = np.random.default_rng(0)
    stimuli = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    shapes = sampling.tap_shapes(model, 32, model.study_taps)
    plan = sampling.make_plan(shapes, len(stimuli), seed=(0, 1), repetitions=2)
    acts = sampling.sample_activations(model, "caffe", stimuli, plan, batch_size=8)
    acts_other = sampling.sample_activations(other, "caffe", stimuli, plan, 8)
    for rep in range(2):
        for tap in plan.taps:
            h, w, _ = plan.shapes[tap]
            n = plan.num_images[tap]
            images = stimuli[plan.image_order[rep, :n]]
            channels = plan.channels[tap][rep]
            for net, got in ((model, acts), (other, acts_other)):
                _, direct = net(preprocess.caffe(jnp.asarray(images)), taps=[tap])
                expected = np.asarray(direct[tap])[..., channels]
                assert got[tap].shape == (2, n * h * w, len(channels))
                np.testing.assert_allclose(
                    got[tap][rep], expected.reshape(n * h * w, -1), atol=1e-4
                )
