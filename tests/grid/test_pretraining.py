"""jaxtransfer.grid.pretraining: stand-in sources, saved as Keras HDF5 and read back."""

from pathlib import Path

import jax
import numpy as np
from flax import nnx

from configs import demo
from jaxtransfer.grid import inputs
from jaxtransfer.models import pretrained, resnet
from jaxtransfer.models.formats import keras_h5


def _backbone(model):
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    state = nnx.State({k: v for k, v in state.items() if k != "head"})
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_sources_are_trained_tiny_resnets_read_back_from_keras_files(demo_sources):
    config = demo.get_config()
    backbones = {}
    for name, directory in demo_sources.items():
        seed = inputs.synthetic_source(config, name).seed
        fresh = _backbone(resnet.ResNetTiny(rngs=nnx.Rngs(seed)))  # where it began
        model, metadata = pretrained.load(directory)
        h5_path = Path(directory).with_name(f"{name}_notop.h5")
        assert metadata["source_format"] == "keras_h5"
        assert metadata["source_file"] == h5_path.name
        assert metadata["source_sha256"] == pretrained.sha256_of(h5_path)
        assert metadata["architecture"] == "resnet"
        args = metadata["architecture_args"]
        assert (args["stage_sizes"], args["width"]) == ([1, 1, 1, 1], 8)
        assert model.head is None  # written without a head, like the _notop files
        backbones[name] = _backbone(model)
        # The checkpoint is exactly what the converter reads from the HDF5 file.
        reread, _ = keras_h5.convert(h5_path)
        for a, b in zip(backbones[name], _backbone(reread)):
            np.testing.assert_array_equal(a, b)
        # Pre-training moved the weights and the BatchNorm statistics.
        changed = [not np.array_equal(a, b) for a, b in zip(backbones[name], fresh)]
        assert sum(changed) > len(changed) // 2
    first, second = backbones.values()
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
