"""RadImageNet's other backbones: Keras HDF5 -> Flax -> HDF5, against Keras itself.

DenseNet121, InceptionV3 and InceptionResNetV2 from ``keras.applications`` with
random weights, written by Keras in the three layouts users meet (weights-only
``_notop.h5``, full model, the study's nested fine-tuned model), converted
without naming the architecture, and compared with Keras's own forward pass at
the study's five taps and the pooled features.
"""

import re

import jax
import keras
import keras_oracle
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.models import pretrained
from jaxtransfer.models.formats import keras_h5, keras_layout


def _stem(k):
    """Keras's k-th auto-named Activation (0-based), the stem's ReLUs."""

    def find(model):
        numbered = [
            (int(match[1] or 0), layer.name)
            for layer in model.layers
            if (match := re.fullmatch(r"activation(?:_(\d+))?", layer.name))
        ]
        return sorted(numbered)[k][1]

    return find


# registry name -> (keras.applications name, architecture, tap -> Keras layer).
BACKBONES = {
    "densenet121": ("DenseNet121", "densenet", {}),
    "inception_v3": (
        "InceptionV3",
        "inception_v3",
        {"stem1": _stem(0), "stem5": _stem(4)},
    ),
    "inception_resnet_v2": (
        "InceptionResNetV2",
        "inception_resnet_v2",
        {
            "stem1": _stem(0),
            "stem5": _stem(4),
            "block35_10": "block35_10_ac",
            "block17_20": "block17_20_ac",
            "conv_7b": "conv_7b_ac",
        },
    ),
}


def _assert_close(actual, reference, name):
    assert np.shape(actual) == reference.shape, name
    bound = 1e-4 * np.abs(reference).max()
    error = np.abs(np.asarray(actual) - reference).max()
    assert error <= bound, f"{name}: max error {error:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def images():
    # Preprocessed-range pixels, one non-square size above the Inceptions' 75.
    return np.random.default_rng(0).normal(0, 60, (2, 80, 96, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=list(BACKBONES))
def backbone(request, images, tmp_path_factory):
    """The Keras network, its files in the three layouts, its taps on ``images``."""
    name = request.param
    application, architecture, tap_layers = BACKBONES[name]
    base = keras_oracle.application(application, seed=1)
    root = tmp_path_factory.mktemp(name)
    files = {"weights_only": root / f"{name}_notop.h5", "full_model": root / "full.h5"}
    keras_oracle.save_weights_only(base, files["weights_only"])
    keras_oracle.save_full(base, files["full_model"])
    fine_tuned = keras_oracle.fine_tuned(base, num_classes=3)
    files["nested"] = root / "knee-RadImageNet-freezeFalse-fold1.h5"
    keras_oracle.save_full(fine_tuned, files["nested"])

    model, metadata = keras_h5.convert(files["weights_only"])
    layers = {
        tap: where(base) if callable(where) else where
        for tap, where in tap_layers.items()
    }
    reference = keras_oracle.taps(base, images, model.study_taps, layers)
    return dict(
        name=name, architecture=architecture, base=base, files=files,
        fine_tuned=fine_tuned, reference=reference, converted=(model, metadata),
    )  # fmt: skip


def _forward(model, images):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, images)


def test_every_layout_matches_keras_at_the_studys_taps(backbone, images):
    for layout, path in backbone["files"].items():
        if layout == "weights_only":
            model, metadata = backbone["converted"]
        else:
            model, metadata = keras_h5.convert(path)
        assert metadata["source_layout"] == layout
        assert metadata["architecture"] == backbone["architecture"]
        assert metadata["taps"] == list(model.study_taps)
        logits, acts = _forward(model, images)
        for tap, value in backbone["reference"].items():
            _assert_close(acts[tap], value, f"{layout} {tap}")
        if layout == "nested":
            assert metadata["num_classes"] == 3 and metadata["head_dropout"] == 0.5
            expected = backbone["fine_tuned"].predict(images, verbose=0)
            _assert_close(jax.nn.softmax(logits), expected, "nested softmax")
        else:
            assert logits is None and metadata["num_classes"] is None


def test_export_round_trips_bit_exact_and_keras_loads_it(backbone, tmp_path):
    model, _ = backbone["converted"]
    checkpoint = tmp_path / "checkpoint"
    pretrained.save(model, pretrained.make_metadata(model), checkpoint)
    restored, _ = pretrained.load(checkpoint)
    exported = tmp_path / "exported.h5"
    keras_h5.export(restored, exported)
    # Keras's own file and the export list the same arrays in the same order.
    original = keras_layout.read(backbone["files"]["weights_only"]).layers
    roundtrip = keras_layout.read(exported).layers
    assert len(original) == len(roundtrip)
    for a, b in zip(original, roundtrip):
        assert [x.tobytes() for x in a.arrays] == [y.tobytes() for y in b.arrays]
    # Keras loads the export (by its layer order) into a network of other weights.
    base = backbone["base"]
    expected = [np.asarray(w) for w in base.weights]
    keras_oracle.randomize(base, seed=7)
    assert not np.array_equal(np.asarray(base.weights[1]), expected[1])
    base.load_weights(exported)
    for loaded, want in zip(base.weights, expected):
        np.testing.assert_array_equal(np.asarray(loaded), want)


# --- another architecture's file: an error naming the expected and found layers --


# model= -> what its error on another backbone's file says.
WRONG_MODEL = {
    "resnet50": r"not a Keras ResNet50: layer \S+ should be a \w+, found file layer ",
    "densenet121": r"not a Keras DenseNet121: layer \S+ should be a \w+, found ",
    "inception_v3": r"not a Keras InceptionV3: (expected .* begin|.*left over: )",
    "inception_resnet_v2": r"not a Keras InceptionResNetV2: expected .* layers begin",
}


@pytest.mark.bad_input
def test_a_file_of_another_architecture_names_expected_and_found(backbone):
    for model, match in WRONG_MODEL.items():
        if model != backbone["name"]:
            with pytest.raises(keras_layout.KerasFileError, match=match):
                keras_h5.convert(backbone["files"]["weights_only"], model=model)


def test_keras_builds_the_same_layer_graph_order(backbone):
    """Export writes Keras's graph order; Keras's own model.layers agree."""
    keras_order = [
        layer.name
        for layer in backbone["base"].layers
        if layer.weights and not isinstance(layer, keras.layers.InputLayer)
    ]
    written = keras_h5.keras_weights(backbone["converted"][0])
    assert len(written) == len(keras_order)
    kinds = {"Conv2D": "conv", "BatchNormalization": "bn"}
    for (_, kind, _), name in zip(written, keras_order):
        assert kinds[type(backbone["base"].get_layer(name)).__name__] == kind
