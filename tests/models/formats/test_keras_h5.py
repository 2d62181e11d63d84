"""Keras HDF5 -> Flax: every layout Keras writes, against Keras's own forward pass."""

import os

import command_line
import h5py
import jax
import keras
import keras_oracle
import numpy as np
import pytest
from flax import nnx

from converters import keras_h5 as keras_h5_cli
from converters import to_keras_h5 as to_keras_h5_cli
from jaxtransfer.models import pretrained
from jaxtransfer.models.formats import keras_h5, keras_layout

SIZES = [(64, 64), (96, 128)]  # one square, one not


def _forward(model, images):
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    logits, acts = run(state, images)
    return logits, jax.device_get(acts)


def _assert_close(actual, reference, name):
    bound = 1e-4 * np.abs(reference).max()
    error = np.abs(np.asarray(actual) - reference).max()
    assert error <= bound, f"{name}: max error {error:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def keras_base():
    return keras_oracle.resnet50(seed=0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {s: rng.uniform(-120, 130, (2, *s, 3)).astype(np.float32) for s in SIZES}


@pytest.fixture(scope="module")
def files(keras_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("keras")
    paths = {"weights_only": root / "notop.h5", "full_model": root / "full.h5"}
    keras_oracle.save_weights_only(keras_base, paths["weights_only"])
    keras_oracle.save_full(keras_base, paths["full_model"])
    return paths


@pytest.mark.parametrize("layout", ["weights_only", "full_model"])
def test_backbone_layouts_match_keras_at_every_tap(layout, files, keras_base, images):
    model, metadata = keras_h5.convert(files[layout])
    assert metadata["source_layout"] == layout
    assert metadata["num_classes"] is None and metadata["preprocessing"] == "caffe"
    for size, x in images.items():
        reference = keras_oracle.taps(keras_base, x)
        _, acts = _forward(model, x)
        for name, value in reference.items():
            assert acts[name].shape == value.shape
            _assert_close(acts[name], value, f"{layout} {size} {name}")


def test_nested_fine_tuned_model_matches_keras_softmax(keras_base, images, tmp_path):
    fine_tuned = keras_oracle.fine_tuned(keras_base, num_classes=3)
    # Logits of order 1 keep the softmax away from 0/1, so it says something.
    pooled = max(
        np.abs(keras_oracle.taps(keras_base, x)["pooled"]).sum(-1).max()
        for x in images.values()
    )
    dense = fine_tuned.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / (np.abs(kernel).max() * pooled), bias])
    path = tmp_path / "knee-ImageNet-freezeFalse-fold1.h5"
    keras_oracle.save_full(fine_tuned, path)

    model, metadata = keras_h5.convert(path)
    assert metadata["source_layout"] == "nested"
    assert metadata["num_classes"] == 3 and metadata["head_dropout"] == 0.5
    for size, x in images.items():
        expected = fine_tuned.predict(x, verbose=0)
        assert expected.min() > 1e-3, "degenerate softmax would test nothing"
        logits, acts = _forward(model, x)
        _assert_close(jax.nn.softmax(logits), expected, f"softmax {size}")
        for name, value in keras_oracle.taps(keras_base, x).items():
            _assert_close(acts[name], value, f"nested {size} {name}")


def _str(name):
    return name.decode() if isinstance(name, bytes) else name


def _rename_all(path, layer_name, weight_name):
    """Renames every layer group and weight of a Keras file in place.

    The names are written as byte strings, as TF-Keras 2 writes them (Keras 3
    writes variable-length strings).
    """
    with h5py.File(path, "r+") as f:
        old_layers = [_str(n) for n in f.attrs["layer_names"]]
        new_layers = [layer_name(i) for i in range(len(old_layers))]
        for old, new in zip(old_layers, new_layers):
            group = f[old]
            weights = [_str(n) for n in group.attrs["weight_names"]]
            renamed = [weight_name(new, w.rsplit("/", 1)[-1]) for w in weights]
            for w_old, w_new in zip(weights, renamed):
                data = group[w_old][()]
                del group[w_old]
                group.create_dataset(w_new, data=data)
            group.attrs["weight_names"] = np.array([w.encode() for w in renamed])
            f.move(old, new)
        f.attrs["layer_names"] = np.array([n.encode() for n in new_layers])


def test_conversion_does_not_depend_on_names(files, keras_base, images, tmp_path):
    # TF-Keras 2 writes 'layer/kernel:0'; old generations used other layer names
    # ('res2a_branch2a'). Keras loads by order; so must the converter.
    path = tmp_path / "renamed.h5"
    path.write_bytes(files["weights_only"].read_bytes())
    _rename_all(path, lambda i: f"layer_{i:03d}", lambda layer, w: f"{layer}/{w}:0")
    keras_loaded = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(None, None, 3)
    )
    keras_loaded.load_weights(path)  # Keras itself accepts the renamed file
    x = images[SIZES[1]]
    reference = keras_oracle.taps(keras_loaded, x)
    model, _ = keras_h5.convert(path)
    _, acts = _forward(model, x)
    for name, value in reference.items():
        _assert_close(acts[name], value, f"renamed {name}")
    np.testing.assert_allclose(
        reference["pooled"], keras_oracle.taps(keras_base, x)["pooled"]
    )


def test_imagenet_top_is_dropped_unless_kept(tmp_path, images):
    with_top = keras_oracle.resnet50(seed=3, include_top=True, input_shape=(64, 64, 3))
    path = tmp_path / "resnet50_with_top.h5"
    keras_oracle.save_full(with_top, path)
    model, metadata = keras_h5.convert(path)
    assert model.head is None and metadata["num_classes"] is None
    assert any(
        "1000-class top" in note and "dropped" in note for note in metadata["notes"]
    )

    kept, metadata = keras_h5.convert(path, keep_top=True)
    assert metadata["num_classes"] == 1000 and metadata["head_dropout"] == 0.0
    x = images[(64, 64)]
    logits, _ = _forward(kept, x)
    _assert_close(jax.nn.softmax(logits), with_top.predict(x, verbose=0), "top")


def test_random_baseline_with_its_own_top_keeps_the_head(tmp_path):
    # The study's random baseline: ResNet50(weights=None, include_top=True, classes=2).
    baseline = keras_oracle.resnet50(
        seed=4, include_top=True, classes=2, input_shape=(64, 64, 3)
    )
    path = tmp_path / "random.h5"
    keras_oracle.save_full(baseline, path)
    model, metadata = keras_h5.convert(path)
    assert metadata["num_classes"] == 2 and metadata["head_dropout"] == 0.0
    kernel, bias = baseline.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(model.head.kernel.get_value(), kernel)
    np.testing.assert_array_equal(model.head.bias.get_value(), bias)


def test_round_trip_is_bit_exact_and_keras_loads_the_export(
    files, keras_base, images, tmp_path
):
    model, metadata = keras_h5.convert(files["weights_only"])
    checkpoint = tmp_path / "ckpt"
    pretrained.save(model, metadata, checkpoint)
    restored, restored_metadata = pretrained.load(checkpoint)
    assert restored_metadata == metadata
    exported = tmp_path / "exported.h5"
    assert (
        to_keras_h5_cli.main(["--input", str(checkpoint), "--output", str(exported)])
        == 0
    )

    original = keras_layout.read(files["weights_only"]).layers
    roundtrip = keras_layout.read(exported).layers
    assert len(original) == len(roundtrip) == 106
    for a, b in zip(original, roundtrip):
        assert len(a.arrays) == len(b.arrays)
        for x, y in zip(a.arrays, b.arrays):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), a.name

    keras_loaded = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(None, None, 3)
    )
    keras_loaded.load_weights(exported)
    for w_loaded, w_base in zip(keras_loaded.weights, keras_base.weights):
        np.testing.assert_array_equal(np.asarray(w_loaded), np.asarray(w_base))


def test_head_round_trips_bit_exact(keras_base, tmp_path):
    fine_tuned = keras_oracle.fine_tuned(keras_base, num_classes=2)
    path = tmp_path / "ft.h5"
    keras_oracle.save_full(fine_tuned, path)
    model, _ = keras_h5.convert(path)
    exported = tmp_path / "ft_export.h5"
    keras_h5.export(model, exported)
    head = keras_layout.read(exported).layers[-1]
    kernel, bias = fine_tuned.layers[-1].get_weights()
    assert head.name == "dense"
    assert head.arrays[0].tobytes() == kernel.tobytes()
    assert head.arrays[1].tobytes() == bias.tobytes()


# --- bad input: a clear error, and no output directory afterwards ---------------


def _convert_cli_fails(source, output, match, capsys):
    err = command_line.fails(
        keras_h5_cli.main, ["--input", source, "--output", output], capsys
    )
    assert match in err, err
    assert not output.exists()
    leftovers = [p for p in output.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.mark.bad_input
def test_missing_file(tmp_path, capsys):
    _convert_cli_fails(tmp_path / "nope.h5", tmp_path / "out", "no such file", capsys)


@pytest.mark.bad_input
def test_truncated_file(files, tmp_path, capsys):
    data = files["full_model"].read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    _convert_cli_fails(truncated, tmp_path / "out", "truncated or corrupt", capsys)


@pytest.mark.bad_input
def test_not_hdf5(tmp_path, capsys):
    text = tmp_path / "weights.h5"
    text.write_text("this is not a weight file\n")
    _convert_cli_fails(text, tmp_path / "out", "not a readable HDF5 file", capsys)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "content",
    [b"", b"<!DOCTYPE html><html><body>Sign in</body></html>\n"],
    ids=["empty", "html"],
)
def test_an_empty_or_html_download_is_not_hdf5(tmp_path, content, capsys):
    path = tmp_path / "resnet50_notop.h5"
    path.write_bytes(content)
    _convert_cli_fails(path, tmp_path / "out", "is not a readable HDF5 file", capsys)


@pytest.mark.bad_input
def test_hdf5_without_keras_layout(tmp_path, capsys):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    _convert_cli_fails(path, tmp_path / "out", "not a Keras weight file", capsys)


def test_a_shallower_keras_resnet_converts_with_its_own_depth(images, tmp_path):
    keras_model = keras_oracle.shallow_resnet(seed=3)
    path = tmp_path / "shallow_notop.h5"
    keras_oracle.save_weights_only(keras_model, path)
    model, metadata = keras_h5.convert(path)
    assert metadata["architecture"] == "resnet"
    assert metadata["architecture_args"]["stage_sizes"] == [1, 1, 1, 1]
    assert metadata["architecture_args"]["width"] == 64
    x = images[SIZES[1]]
    reference = keras_oracle.taps(keras_model, x, model.study_taps)
    _, acts = _forward(model, x)
    for name, value in reference.items():
        _assert_close(acts[name], value, f"shallow {name}")


@pytest.mark.bad_input
def test_not_a_resnet50(tmp_path, capsys):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    small = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    path = tmp_path / "small.h5"
    keras_oracle.save_full(small, path)
    _convert_cli_fails(path, tmp_path / "out", "not a Keras ResNet50", capsys)


@pytest.mark.bad_input
def test_shape_mismatch_names_layer_and_shapes(tmp_path, capsys):
    grey = keras_oracle.resnet50(seed=5, input_shape=(64, 64, 1))
    path = tmp_path / "grey.h5"
    keras_oracle.save_weights_only(grey, path)
    _convert_cli_fails(
        path, tmp_path / "out", "shape mismatch at layer conv1_conv", capsys
    )
    with pytest.raises(ValueError, match=r"\(7, 7, 3, 64\).*\(7, 7, 1, 64\)"):
        keras_h5.convert(path)


def test_failure_while_saving_leaves_no_directory(files, tmp_path, monkeypatch, capsys):
    def broken_dumps(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pretrained.json, "dumps", broken_dumps)
    _convert_cli_fails(files["weights_only"], tmp_path / "out", "disk full", capsys)


@pytest.mark.bad_input
def test_existing_output_is_not_overwritten(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--input", files["weights_only"], "--output", out]
    assert "already exists" in command_line.fails(keras_h5_cli.main, argv, capsys)
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_writes_checkpoint_with_metadata(files, tmp_path):
    out = tmp_path / "imagenet"
    assert (
        keras_h5_cli.main(["--input", str(files["weights_only"]), "--output", str(out)])
        == 0
    )
    metadata = pretrained.read_metadata(out)
    assert metadata["source_sha256"] == pretrained.sha256_of(files["weights_only"])
    assert metadata["taps"][0] == "conv1_relu" and len(metadata["taps"]) == 5
    assert sorted(os.listdir(out)) == ["metadata.json", "state"]
