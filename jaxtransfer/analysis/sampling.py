"""The paper's datapoint and channel sampling for CCA (docs/protocol.md#cca).

For every tap, a repetition uses n_img = round(p / (h w)) stimulus images (capped by
the number of stimuli), turns every spatial position of every image into one
datapoint, and keeps d randomly drawn channels (all of them when C <= d). Both
models of a pair see the same images and the same channel indices.

How this differs from the reference script, and why it does not matter for the
reported numbers: CCA.py draws a new image sample per tap and per pair (one process
per pair). Here one repetition draws one random ordering of the stimuli, and tap t
uses its first n_img(t) images, so a single forward pass per model and repetition
serves every tap; the channel indices of a (repetition, tap) are shared by all the
networks of a fold, so one Gram product over the stacked networks serves all pairs.
Each pair's sample is still a uniformly random image set and channel set, the same
for both of its models, i.e. distributed exactly as in CCA.py; only the estimates
of different pairs and taps become correlated. Samples are seeded (numpy PCG64 from
``(seed, fold)``), so a rerun reproduces them.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtransfer.data import preprocess
from jaxtransfer.models import layers

PAPER_DATAPOINTS = 10_000
PAPER_CHANNELS = 64
PAPER_REPETITIONS = 5
PAPER_EPSILON = 1e-12
# Result columns of CCA_<target>.csv, in network order (docs/protocol.md#cca-taps).
LAYER_NAMES = ("conv1", "block1", "block2", "block3", "block4")


def num_images(
    height: int, width: int, num_stimuli: int, datapoints: int = PAPER_DATAPOINTS
) -> int:
    """Images per repetition for a tap of spatial size (height, width).

    Python's round (half to even) as in CCA.py, capped by the stimulus count.
    """
    return max(1, min(round(datapoints / (height * width)), num_stimuli))


def tap_shapes(
    model: layers.Backbone, image_size: int | tuple[int, int], taps: Sequence[str]
) -> dict[str, tuple[int, int, int]]:
    """(h, w, C) of each tap for square (or (H, W)) inputs, without running it."""
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    graphdef, state = nnx.split(model)

    def forward(state, images):
        return nnx.merge(graphdef, state)(images, taps=taps)[1]

    shapes = jax.eval_shape(
        forward, state, jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    )
    return {tap: tuple(int(s) for s in shapes[tap].shape[1:]) for tap in taps}


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """Which images and channels each repetition and tap uses (one fold).

    Attributes:
      taps: tap names in network order.
      shapes: (h, w, C) per tap.
      num_images: n_img per tap.
      image_order: int (repetitions, max n_img): a random sample of stimulus
        indices without replacement per repetition; tap t uses the first
        n_img[t] of a row.
      channels: per tap, int (repetitions, d): channel indices without
        replacement (sorted), shared by every network.
      seed: the numpy seed sequence entropy the plan was drawn from.
      datapoints: target datapoints p.
      num_stimuli: number of stimulus images available.
    """

    taps: tuple[str, ...]
    shapes: dict[str, tuple[int, int, int]]
    num_images: dict[str, int]
    image_order: np.ndarray
    channels: dict[str, np.ndarray]
    seed: tuple[int, ...]
    datapoints: int
    num_stimuli: int

    @property
    def repetitions(self) -> int:
        return self.image_order.shape[0]

    def num_datapoints(self, tap: str) -> int:
        h, w, _ = self.shapes[tap]
        return self.num_images[tap] * h * w

    def describe(self) -> dict:
        """A JSON-ready summary (the sampling details of the output)."""
        return {
            "seed": list(self.seed),
            "datapoints_target": self.datapoints,
            "repetitions": self.repetitions,
            "num_stimuli": self.num_stimuli,
            "taps": {
                tap: {
                    "shape_hwc": list(self.shapes[tap]),
                    "num_images": self.num_images[tap],
                    "num_datapoints": self.num_datapoints(tap),
                    "num_channels": int(self.channels[tap].shape[1]),
                }
                for tap in self.taps
            },
            "image_order": self.image_order.tolist(),
            "channels": {tap: c.tolist() for tap, c in self.channels.items()},
        }


def make_plan(
    shapes: dict[str, tuple[int, int, int]],
    num_stimuli: int,
    *,
    seed: Sequence[int],
    datapoints: int = PAPER_DATAPOINTS,
    channels: int = PAPER_CHANNELS,
    repetitions: int = PAPER_REPETITIONS,
) -> SamplingPlan:
    """Draws the images and channels of every repetition and tap.

    Args:
      shapes: (h, w, C) per tap, in network order (`tap_shapes`).
      num_stimuli: number of stimulus images.
      seed: integers seeding numpy's PCG64 (e.g. (analysis seed, fold)).
      datapoints: p, the target number of datapoints per tap.
      channels: d, channels per tap (all channels where C <= d).
      repetitions: independent samples per tap.

    Returns:
      The plan.
    """
    rng = np.random.default_rng(list(seed))
    counts = {
        tap: num_images(h, w, num_stimuli, datapoints)
        for tap, (h, w, _) in shapes.items()
    }
    largest = max(counts.values())
    image_order = np.stack(
        [rng.permutation(num_stimuli)[:largest] for _ in range(repetitions)]
    )  # (reps, max n_img)
    chosen = {}
    for tap, (_, _, c) in shapes.items():
        d = min(channels, c)
        chosen[tap] = np.stack(
            [np.sort(rng.choice(c, size=d, replace=False)) for _ in range(repetitions)]
        )  # (reps, d)
    return SamplingPlan(
        taps=tuple(shapes),
        shapes=dict(shapes),
        num_images=counts,
        image_order=image_order,
        channels=chosen,
        seed=tuple(int(s) for s in seed),
        datapoints=datapoints,
        num_stimuli=num_stimuli,
    )


def make_sampler(
    model: layers.Backbone, preprocessing: str, taps: Sequence[str]
) -> Callable[[np.ndarray, dict[str, np.ndarray]], dict[str, jax.Array]]:
    """A jitted ``(images 0..255, {tap: channel indices}) -> {tap: (B, h, w, d)}``.

    Inference mode (BatchNorm moving statistics, no dropout), the checkpoint's
    preprocessing; channel indices are arguments, so new samples do not recompile.
    """
    graphdef, state = nnx.split(model)
    prep = preprocess.get(preprocessing)
    taps = tuple(taps)

    @jax.jit
    def forward(state, images, channels):
        _, acts = nnx.merge(graphdef, state)(prep(images), taps=taps)
        return {tap: jnp.take(acts[tap], channels[tap], axis=-1) for tap in taps}

    return lambda images, channels: forward(state, images, channels)


def sample_activations(
    model: layers.Backbone,
    preprocessing: str,
    stimuli: np.ndarray,
    plan: SamplingPlan,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """One network's sampled activations for every repetition and tap.

    Args:
      model: the network (its head, if any, is ignored).
      preprocessing: its pixel preprocessing ('caffe' for Keras weights).
      stimuli: uint8 or float (num_stimuli, H, W, 3) RGB images in 0..255.
      plan: the fold's sampling plan.
      batch_size: images per forward pass (the last batch is padded).

    Returns:
      Per tap, float32 (repetitions, n_img h w, d): datapoints ordered image by
      image, then row-major over (h, w), as Keras' reshape to (n_img h w, C).
    """
    sampler = make_sampler(model, preprocessing, plan.taps)
    largest = plan.image_order.shape[1]
    out = {
        tap: np.empty(
            (plan.repetitions, plan.num_datapoints(tap), plan.channels[tap].shape[1]),
            np.float32,
        )
        for tap in plan.taps
    }
    for rep in range(plan.repetitions):
        channels = {tap: jnp.asarray(plan.channels[tap][rep]) for tap in plan.taps}
        for start in range(0, largest, batch_size):
            index = plan.image_order[rep, start : start + batch_size]
            chunk = np.asarray(stimuli[index], np.float32)
            valid = len(chunk)
            if valid < batch_size:  # pad: the last batch reuses the compiled shape
                pad = np.zeros((batch_size - valid, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            acts = jax.device_get(sampler(jnp.asarray(chunk), channels))
            for tap in plan.taps:
                keep = min(valid, plan.num_images[tap] - start)
                if keep <= 0:
                    continue
                h, w, _ = plan.shapes[tap]
                rows = acts[tap][:keep].reshape(keep * h * w, -1)  # (keep h w, d)
                out[tap][rep, start * h * w : (start + keep) * h * w] = rows
    return out
