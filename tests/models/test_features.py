"""models.features and its command line, jaxtransfer.extract: taps of a converted
Keras file on raw 0..255 images."""

import command_line
import keras
import keras_oracle
import numpy as np
import pytest

from jaxtransfer import extract
from jaxtransfer.models import features, pretrained
from jaxtransfer.models.formats import keras_h5


@pytest.fixture(scope="module")
def fine_tuned_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    base = keras_oracle.resnet50(seed=7)
    model = keras_oracle.fine_tuned(base, num_classes=2)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 1e-4, bias])
    keras_oracle.save_full(model, root / "ft.h5")
    converted, metadata = keras_h5.convert(root / "ft.h5")
    pretrained.save(converted, metadata, root / "ckpt")
    return root / "ckpt", base, model


def test_extract_matches_keras_with_caffe_preprocessing(
    fine_tuned_checkpoint, tmp_path
):
    checkpoint, base, model = fine_tuned_checkpoint
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 80, 3), np.uint8)
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "y.npz"
    argv = ["--checkpoint", str(checkpoint), "--images", str(tmp_path / "x.npy")]
    # batch 2 over 5 images: the last batch is padded and cut back.
    assert extract.main([*argv, "--output", str(out), "--batch_size", "2"]) == 0

    preprocessed = keras.applications.resnet50.preprocess_input(
        images.astype(np.float32)
    )
    reference = keras_oracle.taps(base, preprocessed)
    with np.load(out) as result:
        assert sorted(result.files) == sorted([*reference, "probs"])
        for name, value in reference.items():
            assert result[name].shape == value.shape
            error = np.abs(result[name] - value).max()
            assert error <= 1e-4 * np.abs(value).max(), name
        expected = model.predict(preprocessed, verbose=0)
        np.testing.assert_allclose(result["probs"], expected, atol=1e-5)
        assert 0.01 < expected.min(), "degenerate softmax would test nothing"


def test_extract_all_blocks(fine_tuned_checkpoint, tmp_path):
    checkpoint, _, _ = fine_tuned_checkpoint
    np.save(tmp_path / "x.npy", np.zeros((1, 32, 32, 3), np.float32))
    names = features.extract_to_npz(
        str(checkpoint),
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npz"),
        all_blocks=True,
    )
    assert len([n for n in names if n.endswith("_out")]) == 16


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((2, 64, 64)), "expected RGB images of shape"),
        (np.zeros((2, 64, 64, 3), np.int64), "expected uint8 or float"),
        (np.zeros((2, 16, 16, 3), np.uint8), "too small"),
    ],
)
@pytest.mark.bad_input
def test_bad_images_leave_no_output(
    fine_tuned_checkpoint, tmp_path, array, match, capsys
):
    checkpoint, _, _ = fine_tuned_checkpoint
    np.save(tmp_path / "x.npy", array)
    out = tmp_path / "y.npz"
    argv = ["--checkpoint", checkpoint, "--images", tmp_path / "x.npy", "--output", out]
    assert match in command_line.fails(extract.main, argv, capsys)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


@pytest.mark.bad_input
def test_not_a_checkpoint(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 32, 32, 3), np.uint8))
    argv = ["--checkpoint", tmp_path, "--images", tmp_path / "x.npy"]
    err = command_line.fails(
        extract.main, [*argv, "--output", tmp_path / "y.npz"], capsys
    )
    assert "not a jaxtransfer checkpoint" in err
