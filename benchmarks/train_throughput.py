"""Train-step throughput: jaxtransfer vs PyTorch eager and Keras 3, same model and step.

Every implementation trains the same network (`--model`: the study's Keras
ResNet50 v1 layout by default, or DenseNet121, InceptionV3, InceptionResNetV2),
with global average pooling, Dropout(0.5) and Dense(2), softmax cross-entropy and
Adam at the paper's fine-tuning rate, on random 0..255 images of the given size,
batch and dtype, in the same process. Each timed call runs `--steps-per-sync`
optimizer steps and then waits for the device; the median over `--iters` calls,
divided by the steps, is reported after warm-up. The default is what the training
loop does (`training.mesh.block_each_step`): on an accelerator 5 steps queued back
to back (blocking on each adds the host's dispatch of every step to the device
time), on a CPU each step waited for (a step queued behind the running one is
slower there).

- `jaxtransfer`: the engine's jitted train program (`training.engine.programs`:
  gather by index from the on-device uint8 split, caffe preprocessing, loss,
  grads, Adam), with the paper's augmentation on device (`augment: true`) and
  without it, so the row without augmentation does exactly what the other rows do.
  `members > 1` is one step of M member slots on one device (vmapped, or
  `lax.map`); its images/s counts the images of all members.
- `torch_eager`: torchvision's twin of the network (`TORCH_TWINS`): ResNet50 with
  the stride moved to the first 1x1 convolution of each downsampling block
  (Keras's v1 layout, the same FLOPs), `densenet121`, `inception_v3` (no
  auxiliary head); torchvision has no InceptionResNetV2. The same head,
  `torch.optim.Adam`; bfloat16 through `torch.autocast`. NCHW, and
  `channels_last` as a second row. Skipped, saying why, when torch is missing.
- `keras`: the `keras.applications` network (its JAX backend when KERAS_BACKEND
  is unset) with the same head, compiled `train_on_batch`. float32 only.

Memory: jaxtransfer rows carry XLA's compiled memory analysis of the step
(`compiled_bytes`: arguments + outputs + temporaries - donated aliases) divided by
the members; on a GPU also the process's `peak_bytes_in_use`; torch on a GPU
reports `torch.cuda.max_memory_allocated`. `--memory-only` compiles the whole grid
of one target (`--members 25 --batch 128 --dtypes bfloat16`) without running it and
reports its compiled size. `--ensemble-map` runs the ensemble's members one after
another inside the step (`jax.lax.map`) instead of vmapping them. `--remat` makes
the jaxtransfer steps recompute each block in the backward pass
(`training.steps.StepConfig.remat`). `--pointwise-as-conv` runs the 1x1
convolutions as XLA convolutions instead of the matrix products jaxtransfer uses
(an ablation).
`--flax-batchnorm` adds a row with Flax's own BatchNorm gradient beside the plain
jaxtransfer row (an ablation of `jaxtransfer.models.batch_norm`). `--model tiny`
runs jaxtransfer's tiny test ResNet (PyTorch and Keras rows then say they were
skipped): a quick check that the script runs, for the test suite and before GPU
time is spent on it.

Usage:
  python benchmarks/train_throughput.py [--sizes 112,224] [--batch 32]
      [--dtypes float32,bfloat16] [--members 5] [--iters 5] [--impls ...] [--remat]
      [--ensemble-map] [--ensemble-only] [--pointwise-as-conv] [--flax-batchnorm]
      [--model resnet50|densenet121|inception_v3|inception_resnet_v2|tiny]
      [--output benchmarks/train_throughput.json]
Prints one JSON object per line per measurement (keys impl, size, batch, dtype,
members, images_per_s, device, ...) and writes them all to --output.
"""

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

from jaxtransfer import models  # noqa: E402
from jaxtransfer.data import augment  # noqa: E402
from jaxtransfer.models import batch_norm, layers  # noqa: E402
from jaxtransfer.runtime import xla_flags  # noqa: E402
from jaxtransfer.training import engine, steps  # noqa: E402
from jaxtransfer.training import mesh as mesh_lib  # noqa: E402

NUM_CLASSES = 2
LEARNING_RATE = 1e-5  # the paper's fine-tuning stage
IMPLS = ("jaxtransfer", "torch_eager", "keras")
# --model -> keras.applications name (the Keras twin).
KERAS_TWINS = {
    "resnet50": "ResNet50",
    "densenet121": "DenseNet121",
    "inception_v3": "InceptionV3",
    "inception_resnet_v2": "InceptionResNetV2",
}


def _random_split(rng, num_images, size):
    """uint8 images (n, H, W, 3) in 0..255 and int32 labels, as a prepared split."""
    images = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, num_images).astype(np.int32)
    return images, labels


def _compiled_bytes(jitted, *args) -> int | None:
    """Arguments + outputs + temporaries - donated (aliased) bytes of a step."""
    analysis = jitted.lower(*args).compile().memory_analysis()
    if analysis is None:
        return None
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )


def _device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def _as_lax_convs(model):
    """Turns the model's 1x1 convolutions back into XLA convolutions.

    jaxtransfer runs them as matrix products (``layers.pointwise_conv``), which
    XLA:CPU runs much faster; whether a GPU prefers cuDNN's convolutions is what
    ``--pointwise-as-conv`` measures.
    """
    for _, module in nnx.iter_modules(model):
        if getattr(module, "conv_general_dilated", None) is layers.pointwise_conv:
            module.conv_general_dilated = jax.lax.conv_general_dilated
    return model


def _as_flax_batchnorm(model):
    """Gives the model's BatchNorm layers back Flax's autodiff training gradient.

    jaxtransfer's ``BatchNorm`` is ``nnx.BatchNorm`` with a closed-form gradient
    (``jaxtransfer.models.batch_norm``); ``--flax-batchnorm`` measures what it saves.
    """
    for _, module in nnx.iter_modules(model):
        if isinstance(module, batch_norm.BatchNorm):
            module.__class__ = nnx.BatchNorm
    return model


@dataclasses.dataclass(frozen=True)
class Variant:
    """How the jaxtransfer step is built, beyond size, batch, dtype and members."""

    augment: bool = False
    remat: bool = False
    vectorize: bool = True  # an ensemble's members vmapped, else lax.map
    pointwise_as_conv: bool = False  # 1x1 convolutions as XLA convs (ablation)
    flax_batchnorm: bool = False  # nnx.BatchNorm's autodiff gradient (ablation)
    model: str = "resnet50"  # a key of models.MODELS

    def record(self, members: int) -> dict:
        return {
            "model": self.model,
            "augment": self.augment,
            "remat": self.remat,
            "ensemble_vectorize": self.vectorize if members > 1 else None,
            "pointwise": "conv" if self.pointwise_as_conv else "matmul",
            "batchnorm": "flax" if self.flax_batchnorm else "closed_form_vjp",
        }


def _jax_step(size, batch, dtype, members, variant, rng, abstract=False):
    """The jitted train step and its arguments: one run, or M as one ensemble.

    ``abstract`` gives shapes only (``jax.ShapeDtypeStruct``) for the members' state
    and the images: enough to compile and size the step, without building M models
    or allocating their data.
    """
    config = steps.StepConfig(
        learning_rate=LEARNING_RATE,
        compute_dtype=dtype,
        augment=augment.AugmentConfig() if variant.augment else None,
        remat=variant.remat,
    )
    states = []
    for seed in range(1 if abstract else members):
        model = models.get(variant.model)(
            num_classes=NUM_CLASSES, dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed)
        )
        if variant.pointwise_as_conv:
            _as_lax_convs(model)
        if variant.flax_batchnorm:
            _as_flax_batchnorm(model)
        graphdef, state = steps.create_state(model, config.optimizer, nnx.Param)
        states.append(state)
    if abstract:
        images = jax.ShapeDtypeStruct((batch * members, size, size, 3), jnp.uint8)
        labels = jax.ShapeDtypeStruct((batch * members,), jnp.int32)
    else:
        images, labels = _random_split(rng, batch * members, size)
        images, labels = jax.device_put(images), jax.device_put(labels)
    # Every member on the first device; the engine's slot-stacked state and keys.
    mesh = mesh_lib.make_mesh(members, devices=jax.devices()[:1])
    mode = "vmap" if variant.vectorize or members == 1 else "map"
    train_step, _ = engine.programs(graphdef, NUM_CLASSES, config, mesh, mode)
    indices = np.arange(batch * members, dtype=np.int32).reshape(members, batch)
    keys = np.stack([jax.random.key_data(jax.random.key(m)) for m in range(members)])
    stack = functools.partial(jax.tree.map, lambda *leaves: jnp.stack(leaves))
    if abstract:
        stacked = jax.eval_shape(lambda s: stack(*[s] * members), states[0])
    else:
        stacked = stack(*states)

    def step(*args):
        with jax.set_mesh(mesh):
            return train_step(*args)

    step.lower = lambda *args: _lower_in(mesh, train_step, *args)
    args = [stacked, images, labels, indices, keys, np.ones(members, bool), 0]
    return step, args


def _lower_in(mesh, program, *args):
    with jax.set_mesh(mesh):
        return program.lower(*args)


def _seconds_per_step(one_step, wait, iters, steps_per_sync):
    """Median seconds a step, over ``iters`` runs of ``steps_per_sync`` queued steps."""

    def steps():
        for _ in range(steps_per_sync):
            one_step()
        wait()

    return timing.median_seconds(steps, iters) / steps_per_sync


def bench_jaxtransfer(size, batch, dtype, members, variant, iters, rng, steps_per_sync):
    step, args = _jax_step(size, batch, dtype, members, variant, rng)
    compiled = _compiled_bytes(step, *args)

    def one_step():
        args[0], _ = step(*args)

    seconds = _seconds_per_step(
        one_step, lambda: jax.block_until_ready(args[0]), iters, steps_per_sync
    )
    return {
        "impl": "jaxtransfer",
        **variant.record(members),
        "seconds_per_step": seconds,
        "images_per_s": batch * members / seconds,
        "compiled_bytes_per_member": None if compiled is None else compiled // members,
        "device_peak_bytes": _device_peak_bytes(),
    }


def memory_only(size, batch, dtype, members, variant, rng):
    """Compiled size of the fold-ensemble step, without running or allocating it."""
    step, args = _jax_step(size, batch, dtype, members, variant, rng, abstract=True)
    compiled = _compiled_bytes(step, *args)
    return {
        "impl": "jaxtransfer",
        **variant.record(members),
        "compiled_bytes": compiled,
        "compiled_bytes_per_member": None if compiled is None else compiled // members,
    }


def _torch_resnet50_v1(torch, torchvision):
    """torchvision ResNet50 in Keras's v1 layout with the study's head."""
    model = torchvision.models.resnet50(weights=None)
    for layer in (model.layer2, model.layer3, model.layer4):
        first = layer[0]  # Keras v1 strides the block's first 1x1 convolution
        first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
    model.fc = torch.nn.Sequential(
        torch.nn.Dropout(0.5), torch.nn.Linear(2048, NUM_CLASSES)
    )
    return model


def _torch_densenet121(torch, torchvision):
    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(
        torch.nn.Dropout(0.5), torch.nn.Linear(1024, NUM_CLASSES)
    )
    return model


def _torch_inception_v3(torch, torchvision):
    # Its own Dropout(0.5) sits before fc; no auxiliary classifier, as Keras's.
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False
    )
    model.fc = torch.nn.Linear(2048, NUM_CLASSES)
    return model


# --model -> the torchvision twin with the study's head.
TORCH_TWINS = {
    "resnet50": _torch_resnet50_v1,
    "densenet121": _torch_densenet121,
    "inception_v3": _torch_inception_v3,
}


def torch_step(torch, model_name, size, batch, dtype, channels_last, rng):
    """The PyTorch twin's optimizer step as a closure, and a wait for its device."""
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # cuDNN picks the fastest convolution algorithm per shape, as XLA's autotuner does.
    torch.backends.cudnn.benchmark = device == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = TORCH_TWINS[model_name](torch, torchvision)
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=1e-7)
    images, labels = _random_split(rng, batch, size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.from_numpy(labels).long().to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype != "float32")

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    def wait():
        if device == "cuda":
            torch.cuda.synchronize()

    return one_step, wait


def bench_torch(
    model_name, size, batch, dtype, channels_last, iters, rng, steps_per_sync
):
    if model_name not in TORCH_TWINS:
        return {"impl": "torch_eager", "skipped": f"torchvision has no {model_name}"}
    try:
        import torch
    except ImportError:
        return {"impl": "torch_eager", "skipped": "torch is not installed"}
    one_step, wait = torch_step(
        torch, model_name, size, batch, dtype, channels_last, rng
    )
    cuda = torch.cuda.is_available()  # where torch_step put the model
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = _seconds_per_step(one_step, wait, iters, steps_per_sync)
    return {
        "impl": "torch_eager",
        "torch_version": torch.__version__,
        "memory_format": "channels_last" if channels_last else "nchw",
        "threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "seconds_per_step": seconds,
        "images_per_s": batch / seconds,
        "device_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


def bench_keras(model_name, size, batch, iters, rng, steps_per_sync):
    try:
        import keras
    except ImportError:
        return {"impl": "keras", "skipped": "keras is not installed"}
    base = getattr(keras.applications, KERAS_TWINS[model_name])(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(
        keras.layers.Dropout(0.5)(base.output)
    )
    model = keras.Model(base.inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="categorical_crossentropy"
    )
    images, labels = _random_split(rng, batch, size)
    x = images.astype(np.float32)
    y = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    # train_on_batch returns the loss on the host: every step waits for the device.
    seconds = _seconds_per_step(
        lambda: model.train_on_batch(x, y), lambda: None, iters, steps_per_sync
    )
    return {
        "impl": "keras",
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "seconds_per_step": seconds,
        "images_per_s": batch / seconds,
    }


def _runs(args, size, rng, variant):
    """(dtype, members, thunk) of every measurement at one image size."""
    for dtype in args.dtypes:

        def jax_run(members, use_augment, dtype=dtype, **changes):
            chosen = dataclasses.replace(variant, augment=use_augment, **changes)
            return lambda: bench_jaxtransfer(
                size, args.batch, dtype, members, chosen, args.iters, rng, args.sync
            )

        if "jaxtransfer" in args.impls and not args.ensemble_only:
            yield dtype, 1, jax_run(1, False)
            if args.flax_batchnorm:
                yield dtype, 1, jax_run(1, False, flax_batchnorm=True)
            yield dtype, 1, jax_run(1, True)
        twins = [i for i in ("torch_eager", "keras") if i in args.impls]
        if variant.model not in KERAS_TWINS:
            why = f"--model {variant.model} has no PyTorch or Keras twin"
            for impl in twins:
                yield dtype, 1, lambda i=impl, w=why: {"impl": i, "skipped": w}
            twins = []
        if "torch_eager" in twins:
            for channels_last in (False, True):
                yield (
                    dtype,
                    1,
                    lambda d=dtype, c=channels_last: bench_torch(
                        variant.model, size, args.batch, d, c, args.iters, rng,
                        args.sync,
                    ),
                )  # fmt: skip
        if "jaxtransfer" in args.impls and args.members > 1:
            yield dtype, args.members, jax_run(args.members, True)
        if "keras" in twins and dtype == "float32":
            yield (
                dtype,
                1,
                lambda: bench_keras(
                    variant.model, size, args.batch, args.iters, rng, args.sync
                ),
            )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--members", type=int, default=5, help="fold ensemble size")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument(
        "--steps-per-sync",
        dest="sync",
        type=int,
        default=None,
        help="steps queued before each wait for the device (1: every step blocked; "
        "default: as the training loop, 1 on CPUs and 5 on accelerators)",
    )
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="compile the --members ensemble step and report its size; no timing",
    )
    parser.add_argument(
        "--remat",
        action="store_true",
        help="jaxtransfer steps recompute each block in the backward pass",
    )
    parser.add_argument(
        "--ensemble-map",
        dest="vectorize",
        action="store_false",
        help="run the ensemble's members one after another (lax.map), not vmapped",
    )
    parser.add_argument(
        "--ensemble-only",
        action="store_true",
        help="of the jaxtransfer rows, only the --members ensemble",
    )
    parser.add_argument(
        "--pointwise-as-conv",
        action="store_true",
        help="jaxtransfer's 1x1 convolutions as XLA convolutions, not matmuls",
    )
    parser.add_argument(
        "--flax-batchnorm",
        action="store_true",
        help="also time the step with nnx.BatchNorm's autodiff gradient (ablation)",
    )
    parser.add_argument(
        "--model",
        choices=sorted(models.MODELS),
        default="resnet50",
        help="tiny: jaxtransfer's tiny test ResNet, a quick check that the script runs",
    )
    parser.add_argument("--output", default="benchmarks/train_throughput.json")
    args = parser.parse_args(argv)
    args.dtypes = args.dtypes.split(",")
    args.impls = args.impls.split(",")
    unknown = set(args.impls) - set(IMPLS)
    if unknown:
        parser.error(f"--impls: unknown {sorted(unknown)}; choose from {IMPLS}")

    malloc = timing.reuse_freed_memory()
    if (
        args.remat
    ):  # before jax starts its backend; see jaxtransfer/runtime/xla_flags.py
        xla_flags.add(xla_flags.GPU_REMAT)
    device = jax.devices()[0]
    if args.sync is None:
        one_device = mesh_lib.make_mesh(1, devices=jax.devices()[:1])
        args.sync = 1 if mesh_lib.block_each_step(one_device) else 5
    rng = np.random.default_rng(0)
    variant = Variant(
        remat=args.remat,
        vectorize=args.vectorize,
        pointwise_as_conv=args.pointwise_as_conv,
        model=args.model,
    )
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        if args.memory_only:
            with_augment = dataclasses.replace(variant, augment=True)
            runs = [
                (d, args.members, functools.partial(
                    memory_only, size, args.batch, d, args.members, with_augment, rng))
                for d in args.dtypes
            ]  # fmt: skip
        else:
            runs = _runs(args, size, rng, variant)
        for dtype, members, run in runs:
            row = {
                "benchmark": "train_throughput",
                "size": size,
                "batch": args.batch,
                "dtype": dtype,
                "members": members,
                "steps_per_sync": None if args.memory_only else args.sync,
                "device": f"{device.platform}:{device.device_kind}",
                "cpu_count": os.cpu_count(),
                "jax_version": jax.__version__,
                "python": platform.python_version(),
                **malloc,
                **run(),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    timing.write_json_lines(args.output, results)
    return results


if __name__ == "__main__":
    main()
