"""The study's 14 model pairs and their layer-wise CCA for one fold.

docs/protocol.md#cca

Networks of a fold (8): the two pretrained initialisations ``ImageNet`` and
``RadImageNet``, two independent fresh random initialisations (``random`` and
``random_2``; a pair's ``random`` is a fresh init, never the random-init fine-tuned
model), and the four fine-tuned models ``<T>-<source>-freeze<True|False>``.

Two computations:

- ``paper_cca``: the paper's sampled mean CCA. Every network's sampled activations
  (`sampling.sample_activations`) are stacked per tap as (repetitions, networks, N, d);
  one call per tap computes one covariance of all networks' channels, whitens each
  network once (`cca.whitening`) and evaluates every pair and repetition from the
  blocks (`cca.mean_cca_from_whitening`), i.e. all (pairs x repetitions) of a tap at
  once (N and d differ between taps). It is one jitted program on accelerators; on
  CPUs its Gram product runs in OpenBLAS between two (`pairwise_mean_cca`).
- ``full_depth_cca`` (beyond the paper): conv1 and every block output, all channels,
  all stimuli; sums and Gram matrices are accumulated over image batches, so memory
  does not grow with the number of datapoints.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtransfer.analysis import cca, sampling
from jaxtransfer.data import preprocess
from jaxtransfer.models import layers

RANDOM, SECOND_RANDOM = "random", "random_2"
INITS = ("ImageNet", "RadImageNet")


def finetuned_name(target: str, source: str, freeze: bool) -> str:
    """The paper's name of a fine-tuned model, e.g. ``knee-ImageNet-freezeFalse``."""
    return f"{target}-{source}-freeze{freeze}"


def paper_pairs(target: str) -> list[tuple[str, str]]:
    """The 14 (model1, model2) network pairs of a CCA_<target>.csv, in paper names.

    The random-random pair is returned as (``random``, ``random_2``): two independent
    initialisations; `csv_name` maps both back to ``random``.
    """
    im_f, im_t = (finetuned_name(target, "ImageNet", f) for f in (False, True))
    rad_f, rad_t = (finetuned_name(target, "RadImageNet", f) for f in (False, True))
    return [
        ("ImageNet", "RadImageNet"),
        ("ImageNet", RANDOM),
        ("RadImageNet", RANDOM),
        (RANDOM, SECOND_RANDOM),
        (im_f, "ImageNet"),
        (im_f, im_t),
        (im_f, rad_f),
        (im_f, RANDOM),
        (im_t, "ImageNet"),
        (im_t, rad_t),
        (rad_f, "RadImageNet"),
        (rad_f, rad_t),
        (rad_f, RANDOM),
        (rad_t, "RadImageNet"),
    ]


def csv_row_order(target: str) -> list[tuple[str, str]]:
    """The 14 pairs in the row order of the paper's CCA_<target>.csv, in CSV names.

    The paper's file lists each pair's five folds together, pairs in this order.
    """
    im_f, im_t = (finetuned_name(target, "ImageNet", f) for f in (False, True))
    rad_f, rad_t = (finetuned_name(target, "RadImageNet", f) for f in (False, True))
    return [
        (rad_f, "RadImageNet"),
        (im_f, "ImageNet"),
        (im_f, rad_f),
        ("ImageNet", "RadImageNet"),
        (im_f, RANDOM),
        (rad_f, RANDOM),
        (RANDOM, RANDOM),
        ("ImageNet", RANDOM),
        ("RadImageNet", RANDOM),
        (im_f, im_t),
        (rad_f, rad_t),
        (im_t, rad_t),
        (im_t, "ImageNet"),
        (rad_t, "RadImageNet"),
    ]


def csv_name(network: str) -> str:
    """The name a network has in the paper's CSVs."""
    return RANDOM if network == SECOND_RANDOM else network


@dataclasses.dataclass(frozen=True)
class Network:
    """A network of the fold, loaded on demand.

    Attributes:
      name: its name in `paper_pairs`.
      load: returns ``(model, preprocessing)``.
      description: where it comes from (written into the sampling JSON).
    """

    name: str
    load: Callable[[], tuple[layers.Backbone, str]]
    description: str


def pair_indices(
    pairs: Sequence[tuple[str, str]], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each pair's two networks in ``names``: (first, second), (P,)."""
    first = np.array([names.index(a) for a, _ in pairs], np.int32)
    second = np.array([names.index(b) for _, b in pairs], np.int32)
    return first, second


class PairwiseCCA(NamedTuple):
    """Mean CCA of network pairs on shared samples.

    Attributes:
      values: (..., P) mean canonical correlations.
      dependent: (..., nets) int, each network's channels that are linear
        combinations of its others to float precision (`cca.Whitening.dependent`):
        where positive, the values can differ from svcca's float64 numerics (the
        paper's), which are ill-defined for exactly dependent channels.
    """

    values: jax.Array
    dependent: jax.Array


def _pairs_mean_cca(sigma_self, sigma_cross, first, second, epsilon, decomposition):
    """Mean CCA of every pair, each network's covariance decomposed once.

    Args:
      sigma_self: (..., nets, d, d) covariance of each network.
      sigma_cross: (..., P, d, d) cross-covariance of each pair.
      first, second: (P,) network index of each pair's two sides.

    Returns:
      `PairwiseCCA` with values (..., P) and dependent (..., nets).
    """
    sides = cca.whitening(sigma_self, epsilon, decomposition)  # fields (..., nets, ...)
    axis = sigma_self.ndim - 3  # the network axis

    def side(index):
        return jax.tree.map(lambda v: jnp.take(v, index, axis=axis), sides)

    values = cca.mean_cca_from_whitening(
        side(first), sigma_cross, side(second), decomposition
    )
    return PairwiseCCA(values, sides.dependent)


def _shifted_stack(acts):
    """(reps, nets, N, d) activations -> (reps, N, nets d) stacked and its column sums.

    The data are shifted near their mean (`cca.shift`) rather than centred: XLA
    writes the stacked copy in the shift's one pass and takes the sums from it, and
    the exact mean enters through `cca.covariance_from_sums`. It saves one pass over
    the activations.
    """
    reps, nets, n, d = acts.shape
    shifted = cca.shift(acts.astype(jnp.promote_types(acts.dtype, jnp.float32)))
    stacked = jnp.moveaxis(shifted, 1, 2).reshape(reps, n, nets * d)
    # Materialised: XLA fuses an elementwise producer into a dot operand and then
    # picks a much slower Gram kernel (as in `cca.covariance`).
    stacked = jax.lax.optimization_barrier(stacked)
    return stacked, jnp.sum(stacked, axis=-2)


def _pairs_from_gram(
    gram, total, num_points, nets, first, second, epsilon, decomposition
):
    """`PairwiseCCA` from the (reps, nets d, nets d) Gram of the shifted stack and
    its (reps, nets d) column sums."""
    reps, width = gram.shape[:2]
    d = width // nets
    sigma = cca.covariance_from_sums(gram, total, total, num_points)
    sigma = jnp.moveaxis(sigma.reshape(reps, nets, d, nets, d), 3, 2)
    index = jnp.arange(nets)  # sigma: (reps, nets, nets, d, d)
    return _pairs_mean_cca(
        sigma[:, index, index],
        sigma[:, first, second],
        first,
        second,
        epsilon,
        decomposition,
    )


_STATIC = ("num_points", "nets", "epsilon", "decomposition")
_shifted_stack_jit = jax.jit(_shifted_stack)
_pairs_from_gram_jit = jax.jit(_pairs_from_gram, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _pairwise_in_one_program(
    acts, first, second, num_points, nets, epsilon, decomposition
):
    """`pairwise_mean_cca` as one jitted program, Gram product in XLA."""
    stacked, total = _shifted_stack(acts)
    return _pairs_from_gram(
        cca.gram(stacked),
        total,
        num_points,
        nets,
        first,
        second,
        epsilon,
        decomposition,
    )


def pairwise_mean_cca(
    acts, first, second, epsilon=sampling.PAPER_EPSILON, decomposition="linalg"
):
    """Mean CCA of many network pairs on shared samples.

    One Gram product over all networks' channels serves every pair; each network is
    whitened once. On accelerators it all runs as one jitted program. On CPUs the
    Gram product runs in the host's BLAS between two jitted programs
    (`cca.host_gram`), which is faster there than XLA:CPU's product.

    Args:
      acts: (repetitions, nets, N, d) activations of every network on the same
        datapoints and channels.
      first: (P,) int, the model1 network of each pair.
      second: (P,) int, the model2 network of each pair.
      epsilon: svcca's epsilon.
      decomposition: one of `cca.DECOMPOSITIONS`, as in `cca.mean_cca`.

    Returns:
      `PairwiseCCA`: values (repetitions, P), as `cca.mean_cca` of each pair, and
      dependent (repetitions, nets).
    """
    acts, first, second = jnp.asarray(acts), jnp.asarray(first), jnp.asarray(second)
    sizes = dict(num_points=acts.shape[2], nets=acts.shape[1])
    options = dict(epsilon=epsilon, decomposition=decomposition)
    if jax.default_backend() != "cpu":
        return _pairwise_in_one_program(acts, first, second, **sizes, **options)
    stacked, total = _shifted_stack_jit(acts)
    gram = jnp.asarray(cca.host_gram(stacked))
    return _pairs_from_gram_jit(
        gram, total, first=first, second=second, **sizes, **options
    )


@dataclasses.dataclass
class FoldCCA:
    """Sampled CCA of one fold.

    Attributes:
      pairs: the pairs evaluated, (model1, model2) network names.
      taps: tap names, network order.
      values: (P, taps) mean over repetitions (NaN where N <= d).
      repetitions: (repetitions, P, taps) every repetition's mean CCA.
      notes: reasons for NaNs.
    """

    pairs: list[tuple[str, str]]
    taps: tuple[str, ...]
    values: np.ndarray
    repetitions: np.ndarray
    notes: list[str]


def paper_cca(
    networks: dict[str, Network],
    pairs: Sequence[tuple[str, str]],
    stimuli: np.ndarray,
    plan: sampling.SamplingPlan,
    batch_size: int = 32,
    epsilon: float = sampling.PAPER_EPSILON,
    activations_hook: Callable[[dict[str, np.ndarray], list[str]], None] | None = None,
    decomposition: str = "linalg",
) -> FoldCCA:
    """The paper's sampled mean CCA for every pair of one fold.

    Networks are loaded one at a time, each sampled on the plan's images and
    channels; then one kernel call per tap evaluates all pairs and repetitions.

    Args:
      networks: every network named in ``pairs``.
      pairs: (model1, model2) network names.
      stimuli: (num_stimuli, H, W, 3) images in 0..255.
      plan: the fold's sampling plan.
      batch_size: images per forward pass.
      epsilon: svcca's epsilon.
      activations_hook: called with the stacked activations {tap: (reps, nets, N,
        d)} and the network order (tests use it to check against the reference).
      decomposition: "linalg" or "jacobi", as in `cca.mean_cca`.

    Returns:
      The fold's CCA values.
    """
    names = sorted({n for pair in pairs for n in pair}, key=list(networks).index)
    stacked = {
        tap: np.empty(
            (
                plan.repetitions,
                len(names),
                plan.num_datapoints(tap),
                plan.channels[tap].shape[1],
            ),
            np.float32,
        )
        for tap in plan.taps
    }
    for k, name in enumerate(names):
        model, preprocessing = networks[name].load()
        acts = sampling.sample_activations(
            model, preprocessing, stimuli, plan, batch_size
        )
        for tap in plan.taps:
            cca.check_finite(acts[tap], f"activations of {name} at {tap}")
            stacked[tap][:, k] = acts[tap]
        del model, acts
    if activations_hook is not None:
        activations_hook(stacked, names)
    first, second = pair_indices(pairs, names)
    per_rep = np.zeros((plan.repetitions, len(pairs), len(plan.taps)))
    notes = []
    for t, tap in enumerate(plan.taps):
        n, d = stacked[tap].shape[2:]
        if n <= d:  # svcca asserts neurons < datapoints
            per_rep[:, :, t] = np.nan
            notes.append(f"{tap}: {n} datapoints <= {d} channels, CCA undefined (NaN)")
            continue
        result = pairwise_mean_cca(
            jnp.asarray(stacked[tap]),
            first,
            second,
            epsilon=epsilon,
            decomposition=decomposition,
        )
        per_rep[:, :, t] = np.asarray(result.values)
        notes += _dependence_notes(tap, names, np.asarray(result.dependent), n)
    return FoldCCA(list(pairs), plan.taps, per_rep.mean(axis=0), per_rep, notes)


def _dependence_notes(tap, names, dependent, num_datapoints) -> list[str]:
    """A note per network whose sampled channels were linearly dependent."""
    notes = []
    for k, name in enumerate(names):
        counts = dependent[:, k]
        if counts.any():
            notes.append(
                f"{tap}: {name}'s sampled channels are linearly dependent (to float "
                f"precision) in {np.count_nonzero(counts)} of {len(counts)} "
                f"repetitions (up to {counts.max()} directions, {num_datapoints} "
                "datapoints); jaxtransfer leaves those directions out, where the "
                "paper's float64 numerics keep them and can give NaN or "
                "correlations above 1"
            )
    return notes


# --- full depth -----------------------------------------------------------------


def _accumulate(acc, acts, mask, first, second):
    """Adds one image batch to the running sums of one tap.

    Args:
      acc: dict with shift (nets, C), count (), total (nets, C), gram (nets, C, C)
        and cross (P, C, C).
      acts: (nets, M, C) activations of the batch (M = batch h w datapoints).
      mask: (M,) 1 for real datapoints, 0 for padding.
    """
    z = (acts - acc["shift"][:, None, :]) * mask[None, :, None]  # (nets, M, C)
    z = jax.lax.optimization_barrier(z)
    hi = jax.lax.Precision.HIGHEST
    return dict(
        shift=acc["shift"],
        count=acc["count"] + jnp.sum(mask),
        total=acc["total"] + jnp.sum(z, axis=1),
        gram=acc["gram"] + jnp.einsum("kmc,kme->kce", z, z, precision=hi),
        cross=acc["cross"]
        + jnp.einsum("pmc,pme->pce", z[first], z[second], precision=hi),
    )


def _covariances_from_sums(acc, first, second):
    """Covariances from the accumulated sums (ddof 1): per network (nets, C, C) and
    per pair (P, C, C)."""
    n, total = acc["count"], acc["total"]  # total: (nets, C), of the shifted data
    sigma_self = cca.covariance_from_sums(acc["gram"], total, total, n)
    sigma_xy = cca.covariance_from_sums(acc["cross"], total[first], total[second], n)
    return sigma_self, sigma_xy  # (nets, C, C), (P, C, C)


@functools.partial(jax.jit, static_argnames=("epsilon", "decomposition"))
def mean_cca_from_sums(
    acc, first, second, epsilon=sampling.PAPER_EPSILON, decomposition="linalg"
):
    """Mean CCA of every pair from streamed sums: (P,)."""
    return _pairs_mean_cca(
        *_covariances_from_sums(acc, first, second),
        first,
        second,
        epsilon,
        decomposition,
    ).values


def _tap_groups(
    shapes: dict[str, tuple[int, int, int]], num_matrices: int, budget_bytes: int
) -> list[list[str]]:
    """Consecutive taps whose float32 accumulators fit the memory budget together."""
    groups, current, used = [], [], 0
    for tap, (_, _, c) in shapes.items():
        size = 4 * num_matrices * c * c
        if current and used + size > budget_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(tap)
        used += size
    if current:
        groups.append(current)
    return groups


def full_depth_cca(
    networks: dict[str, Network],
    pairs: Sequence[tuple[str, str]],
    stimuli: np.ndarray,
    taps: Sequence[str] | None = None,
    batch_size: int = 16,
    epsilon: float = sampling.PAPER_EPSILON,
    memory_budget_bytes: int = 2 << 30,
    decomposition: str = "linalg",
) -> FoldCCA:
    """Mean CCA on all channels and all stimuli at every depth, streamed.

    For every tap, the per-network sums and Gram matrices and the per-pair cross
    Gram matrices of the data (shifted by the first batch's mean, which keeps the
    float32 sums accurate) are accumulated over image batches; each network's
    covariance is then whitened once and shared by its pairs (as in `paper_cca`).
    Taps are processed in groups whose accumulators fit ``memory_budget_bytes``;
    each group takes one pass over the stimuli, with all networks loaded at once.

    Args:
      networks: every network named in ``pairs``.
      pairs: (model1, model2) network names.
      stimuli: (num_stimuli, H, W, 3) images in 0..255.
      taps: taps to evaluate; default conv1 and every block output.
      batch_size: images per forward pass.
      epsilon: svcca's epsilon.
      memory_budget_bytes: accumulator memory per pass.
      decomposition: "linalg" or "jacobi", as in `cca.mean_cca`.

    Returns:
      The values as a `FoldCCA` with one "repetition".
    """
    names = sorted({n for pair in pairs for n in pair}, key=list(networks).index)
    loaded = [networks[name].load() for name in names]
    first, second = pair_indices(pairs, names)
    model0 = loaded[0][0]
    taps = tuple(taps or model0.all_taps[:-1])  # conv1 + every block, no 'pooled'
    shapes = sampling.tap_shapes(model0, stimuli.shape[1:3], taps)
    num = len(stimuli)
    values = np.full((len(pairs), len(taps)), np.nan)
    notes = []
    groups = _tap_groups(shapes, len(names) + len(pairs), memory_budget_bytes)
    accumulate = jax.jit(_accumulate, donate_argnums=0)
    for group in groups:
        forwards = [
            _full_forward(model, preprocessing, group)
            for model, preprocessing in loaded
        ]
        acc = None
        for start in range(0, num, batch_size):
            chunk = np.asarray(stimuli[start : start + batch_size], np.float32)
            valid = len(chunk)
            if valid < batch_size:
                pad = np.zeros((batch_size - valid, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            chunk = jnp.asarray(chunk)
            outs = [forward(chunk) for forward in forwards]
            if acc is None:
                acc = {}
                for tap in group:
                    h, w, c = shapes[tap]
                    first_valid = jnp.stack([o[tap][:valid] for o in outs])
                    acc[tap] = dict(
                        shift=first_valid.reshape(len(names), -1, c).mean(axis=1),
                        count=jnp.zeros((), jnp.float32),
                        total=jnp.zeros((len(names), c), jnp.float32),
                        gram=jnp.zeros((len(names), c, c), jnp.float32),
                        cross=jnp.zeros((len(pairs), c, c), jnp.float32),
                    )
            for tap in group:
                h, w, c = shapes[tap]
                acts = jnp.stack([o[tap] for o in outs]).reshape(len(names), -1, c)
                mask = jnp.repeat(
                    (jnp.arange(batch_size) < valid).astype(jnp.float32), h * w
                )
                acc[tap] = accumulate(acc[tap], acts, mask, first, second)
        for tap in group:
            h, w, c = shapes[tap]
            t = taps.index(tap)
            if num * h * w <= c:
                notes.append(
                    f"{tap}: {num * h * w} datapoints <= {c} channels, "
                    "CCA undefined (NaN)"
                )
                continue
            values[:, t] = np.asarray(
                mean_cca_from_sums(
                    acc[tap],
                    first,
                    second,
                    epsilon=epsilon,
                    decomposition=decomposition,
                )
            )
            del acc[tap]
    return FoldCCA(list(pairs), taps, values, values[None], notes)


def _full_forward(model: layers.Backbone, preprocessing: str, taps: Sequence[str]):
    """Jitted images -> {tap: (B, h, w, C)} in inference mode."""
    graphdef, state = nnx.split(model)
    prep = preprocess.get(preprocessing)
    taps = tuple(taps)

    @jax.jit
    def forward(state, images):
        return nnx.merge(graphdef, state)(prep(images), taps=taps)[1]

    return lambda images: forward(state, images)
