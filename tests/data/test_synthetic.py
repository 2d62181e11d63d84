"""How hard the synthetic images make their task: class cue strength and jitter."""

import numpy as np
from PIL import Image

from jaxtransfer.data import sources, synthetic

SIZE = 32


def _images(class_index, count, seed=0, **style):
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            synthetic.draw_image(class_index, 2, SIZE, rng, **style).astype(float)
            for _ in range(count)
        ]
    )


def _stripe_amplitude(images, class_index):
    """Least-squares amplitude of the class's stripe pattern in the column means."""
    columns = np.arange(SIZE)
    pattern = np.sin(2 * np.pi * (class_index + 1) * columns / SIZE)
    column_means = images.mean(axis=(0, 1))
    return column_means @ pattern / (pattern @ pattern)


def test_class_signal_scales_brightness_gap_and_stripes():
    full = [_images(c, 40) for c in (0, 1)]
    weak = [_images(c, 40, class_signal=0.2) for c in (0, 1)]
    gap_full = full[1].mean() - full[0].mean()
    gap_weak = weak[1].mean() - weak[0].mean()
    assert abs(gap_full - 150) < 1
    assert abs(gap_weak - 30) < 1
    for c in (0, 1):
        assert abs(_stripe_amplitude(full[c], c) - 20) < 1
        assert abs(_stripe_amplitude(weak[c], c) - 4) < 1


def test_brightness_jitter_offsets_each_image():
    steady = _images(0, 200, class_signal=0.2).mean(axis=(1, 2))
    jittered = _images(0, 200, class_signal=0.2, brightness_jitter=20.0)
    per_image = jittered.mean(axis=(1, 2))
    assert steady.std() < 1
    assert 17 < per_image.std() < 23
    assert abs(per_image.mean() - steady.mean()) < 4


def test_write_breast_draws_with_the_given_cues(tmp_path):
    counts = {"benign": 12, "malignant": 12, "normal": 0}
    written = synthetic.write_breast(
        tmp_path, counts, masks=False, image_size=SIZE, class_signal=0.0
    )
    means = {name: [] for name in sources.BREAST_CLASSES}
    for image in written:
        pixels = np.asarray(Image.open(tmp_path / image.path), float)
        means[image.class_name].append(pixels.mean())
    gap = np.mean(means["malignant"]) - np.mean(means["benign"])
    assert abs(gap) < 2  # 150 at the default strength
