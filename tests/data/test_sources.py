"""Readers of the raw downloads against synthetic downloads in the real layouts."""

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxtransfer.data import sources, synthetic

ALL_TARGETS = ["isic", "chest", "breast", "thyroid", "knee", "mammograms", "pcam-small"]


def _read_all(target, root):
    if target.startswith("pcam"):
        return sources.read_target(target, root, sample_size=None)
    return sources.read_target(target, root)


def _by_key(examples):
    return {(e.path, e.table_row): (e.class_name, e.group) for e in examples}


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_reader_recovers_what_the_writer_meant(tmp_path, target):
    written = synthetic.write_target(target, tmp_path)
    examples = _read_all(target, tmp_path)
    expected = {(w.path, w.table_row): (w.class_name, w.group) for w in written}
    assert _by_key(examples) == expected
    assert len(examples) == len(written)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_labels_follow_sorted_class_names(tmp_path, target):
    synthetic.write_target(target, tmp_path)
    classes = sources.CLASS_NAMES[target]
    assert list(classes) == sorted(classes)
    for example in _read_all(target, tmp_path):
        assert example.label == sorted(classes).index(example.class_name)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_reading_is_deterministic_and_keys_unique(tmp_path, target):
    synthetic.write_target(target, tmp_path)
    first, second = _read_all(target, tmp_path), _read_all(target, tmp_path)
    assert first == second
    assert len({e.key for e in first}) == len(first)


def test_listing_is_sorted(tmp_path):
    synthetic.write_breast(tmp_path)
    paths = [e.path for e in sources.read_breast(tmp_path)]
    assert paths == sorted(paths)


@pytest.mark.parametrize(
    ("file_name", "patient_id"),
    [
        ("NORMAL2-IM-0686-0001", "0686"),
        ("IM-0686-0001", "0686"),
        ("person1000_bacteria_2931", "person1000"),
        ("NORMAL2-IM-0686-0001.jpeg", "0686"),
        ("person1000_virus_1681.jpeg", "person1000"),
    ],
)
def test_chest_patient_id_protocol_examples(file_name, patient_id):
    assert sources.chest_patient_id(file_name) == patient_id


def test_chest_pools_splits_and_skips_ds_store(tmp_path):
    files = [
        synthetic.ChestFile("train", "NORMAL", "IM-0686-0001.jpeg", "0686"),
        synthetic.ChestFile("test", "NORMAL", "NORMAL2-IM-0686-0001.jpeg", "0686"),
        synthetic.ChestFile("val", "NORMAL", "IM-0115-0001.jpeg", "0115"),
        synthetic.ChestFile("train", "PNEUMONIA", "person1000_bacteria_2931.jpeg", ""),
        synthetic.ChestFile("val", "PNEUMONIA", "person1000_virus_1681.jpeg", ""),
        synthetic.ChestFile("test", "PNEUMONIA", "person3_virus_16.jpeg", ""),
    ]
    synthetic.write_chest(tmp_path, files)
    found = {e.path: (e.class_name, e.group) for e in sources.read_chest(tmp_path)}
    assert found == {
        "chest_xray/train/NORMAL/IM-0686-0001.jpeg": ("NORMAL", "0686"),
        "chest_xray/test/NORMAL/NORMAL2-IM-0686-0001.jpeg": ("NORMAL", "0686"),
        "chest_xray/val/NORMAL/IM-0115-0001.jpeg": ("NORMAL", "0115"),
        "chest_xray/train/PNEUMONIA/person1000_bacteria_2931.jpeg": (
            "PNEUMONIA",
            "person1000",
        ),
        "chest_xray/val/PNEUMONIA/person1000_virus_1681.jpeg": (
            "PNEUMONIA",
            "person1000",
        ),
        "chest_xray/test/PNEUMONIA/person3_virus_16.jpeg": ("PNEUMONIA", "person3"),
    }
    assert (tmp_path / "chest_xray/train/NORMAL/.DS_Store").exists()


def test_breast_skips_masks_and_normal_is_benign(tmp_path):
    synthetic.write_breast(tmp_path, {"benign": 2, "malignant": 1, "normal": 3})
    found = {e.path: e.class_name for e in sources.read_breast(tmp_path)}
    assert found == {
        "breast/benign (1).png": "benign",
        "breast/benign (2).png": "benign",
        "breast/malignant (1).png": "malignant",
        "breast/normal (1).png": "benign",
        "breast/normal (2).png": "benign",
        "breast/normal (3).png": "benign",
    }
    assert (tmp_path / "breast/normal (3)_mask_1.png").exists()


@pytest.mark.parametrize(
    ("text", "score"),
    [("4a", 4), ("4b", 4), ("4c", 4), ("4.0", 4), ("4", 4), ("2", 2), ("3", 3)]
    + [("5", 5), (None, 1)],
)
def test_thyroid_tirads_normalisation(text, score):
    assert sources.thyroid_tirads_score(text) == score


def test_thyroid_cases_and_inner_join(tmp_path):
    cases = [
        synthetic.ThyroidCase(1, "4a"),
        synthetic.ThyroidCase(2, "4.0"),
        synthetic.ThyroidCase(3, "2", num_images=2),
        synthetic.ThyroidCase(4, None),  # empty <tirads/>
        synthetic.ThyroidCase(5, None, tirads_element=False),
        synthetic.ThyroidCase(10, "5"),
        synthetic.ThyroidCase(11, "3"),
        synthetic.ThyroidCase(12, "4c", num_images=0),
    ]
    synthetic.write_thyroid(tmp_path, cases, orphan_images=2)
    found = {e.path: (e.class_name, e.group) for e in sources.read_thyroid(tmp_path)}
    assert found == {
        "thyroid/1_1.jpg": ("malignant", "1"),
        "thyroid/2_1.jpg": ("malignant", "2"),
        "thyroid/3_1.jpg": ("benign", "3"),
        "thyroid/3_2.jpg": ("benign", "3"),
        "thyroid/4_1.jpg": ("benign", "4"),
        "thyroid/5_1.jpg": ("benign", "5"),
        "thyroid/10_1.jpg": ("malignant", "10"),
        "thyroid/11_1.jpg": ("benign", "11"),
    }
    assert (tmp_path / "thyroid/112_1.jpg").exists()  # orphan, dropped


@pytest.mark.bad_input
def test_thyroid_tirads_off_row_7_is_an_error_naming_the_file(tmp_path):
    cases = [synthetic.ThyroidCase(1, "4a", tirads_child=8)]
    synthetic.write_thyroid(tmp_path, cases, orphan_images=0)
    with pytest.raises(
        sources.LayoutError, match=re.escape(str(tmp_path / "thyroid/1.xml"))
    ) as error:
        sources.read_thyroid(tmp_path)
    assert "its 8th child is <tirads>" in str(error.value)


def test_knee_labels_and_valid_abnormal_quirk(tmp_path):
    exams = [
        synthetic.KneeExam(1, "acl", "train", 1, num_slices=2),
        synthetic.KneeExam(2, "acl", "train", 0),
        synthetic.KneeExam(1130, "acl", "valid", 1),
        synthetic.KneeExam(3, "meniscus", "train", 1),
        synthetic.KneeExam(1, "meniscus", "train", 0),
        synthetic.KneeExam(1131, "meniscus", "valid", 1),
        synthetic.KneeExam(1132, "meniscus", "valid", 0),
    ]
    synthetic.write_knee(tmp_path, exams, unlabelled_slices=1)
    found = {e.path: (e.class_name, e.group) for e in sources.read_knee(tmp_path)}
    prefix = "knee/images"
    assert found == {
        f"{prefix}/acl/0001_sagittal_10.000000.png": ("acl", "0001"),
        f"{prefix}/acl/0001_sagittal_11.000000.png": ("acl", "0001"),
        f"{prefix}/acl/0002_sagittal_10.000000.png": ("normal", "0002"),
        f"{prefix}/acl/1130_sagittal_10.000000.png": ("acl", "1130"),
        f"{prefix}/meniscus/0003_sagittal_10.000000.png": ("meniscus", "0003"),
        f"{prefix}/meniscus/0001_sagittal_10.000000.png": ("normal", "0001"),
        # valid meniscus labels come from valid-abnormal.csv, not valid-meniscus.csv
        f"{prefix}/meniscus/1131_sagittal_10.000000.png": ("meniscus", "1131"),
        f"{prefix}/meniscus/1132_sagittal_10.000000.png": ("normal", "1132"),
    }
    valid_meniscus = (tmp_path / "knee/valid-meniscus.csv").read_text().split()
    assert "1131,0" in valid_meniscus  # the decoy disagrees


def test_mammograms_rows_in_csv_order(tmp_path):
    calc_train, calc_test, mass_train, mass_test = sources.MAMMOGRAM_CSVS
    rows = [
        synthetic.MammogramRow(mass_test, "P_00001", "LEFT", "CC", "MALIGNANT"),
        synthetic.MammogramRow(calc_train, "P_00005", "RIGHT", "CC", "MALIGNANT"),
        synthetic.MammogramRow(calc_train, "P_00005", "RIGHT", "CC", "BENIGN"),
        synthetic.MammogramRow(
            mass_train, "P_00007", "LEFT", "MLO", "BENIGN_WITHOUT_CALLBACK"
        ),
        synthetic.MammogramRow(calc_test, "P_00009", "LEFT", "MLO", "BENIGN"),
    ]
    synthetic.write_mammograms(tmp_path, rows)
    found = [
        (e.path, e.table_row, e.class_name, e.group)
        for e in sources.read_mammograms(tmp_path)
    ]
    images = "mammograms/images"
    assert found == [
        (f"{images}/Calc-Training_P_00005_RIGHT_CC.png", 0, "MALIGNANT", "P_00005"),
        (f"{images}/Calc-Training_P_00005_RIGHT_CC.png", 1, "BENIGN", "P_00005"),
        (f"{images}/Calc-Test_P_00009_LEFT_MLO.png", 0, "BENIGN", "P_00009"),
        (f"{images}/Mass-Training_P_00007_LEFT_MLO.png", 0, "BENIGN", "P_00007"),
        (f"{images}/Mass-Test_P_00001_LEFT_CC.png", 0, "MALIGNANT", "P_00001"),
    ]


def test_isic_first_positive_in_mel_to_vasc_order(tmp_path):
    labels = [("MEL",), ("NV",), ("NV", "MEL"), ("DF", "BKL"), ("VASC", "AKIEC")]
    synthetic.write_isic(tmp_path, labels)
    found = [e.class_name for e in sources.read_isic(tmp_path)]
    assert found == ["MEL", "NV", "MEL", "BKL", "AKIEC"]


PCAM_LABELS = {"train": [0, 1, 1, 0], "valid": [0, 0], "test": [1]}


def test_pcam_png_names_collide_like_the_converter(tmp_path):
    synthetic.write_pcam_png(tmp_path, PCAM_LABELS)
    found = {e.path: e.class_name for e in sources.read_pcam_png(tmp_path, None)}
    folder = "PCam/png_images"
    assert found == {
        f"{folder}/0_label=0.png": "no",  # train 0, then overwritten by valid 0
        f"{folder}/0_label=1.png": "yes",  # test 0
        f"{folder}/1_label=0.png": "no",  # valid 1
        f"{folder}/1_label=1.png": "yes",
        f"{folder}/2_label=1.png": "yes",
        f"{folder}/3_label=0.png": "no",
    }


def test_pcam_sample_is_pandas_sample_of_the_sorted_listing(tmp_path):
    synthetic.write_pcam_png(tmp_path, PCAM_LABELS)
    names = sorted(p.name for p in (tmp_path / "PCam/png_images").iterdir())
    # pandas' sample(n, random_state=s) without replacement == permutation prefix
    order = np.random.RandomState(22).permutation(len(names))[:4]
    expected = [f"PCam/png_images/{names[i]}" for i in order]
    sample = sources.read_pcam_png(tmp_path, sample_size=4, random_state=22)
    assert [e.path for e in sample] == expected


def test_pcam_h5_and_png_give_the_same_sample_and_pixels(tmp_path):
    synthetic.write_pcam_h5(tmp_path, PCAM_LABELS)
    synthetic.write_pcam_png(tmp_path, PCAM_LABELS)
    from_h5 = sources.read_pcam_h5(tmp_path, sample_size=5, random_state=22)
    from_png = sources.read_pcam_png(tmp_path, sample_size=5, random_state=22)
    assert [e.paper_path for e in from_h5] == [e.path for e in from_png]
    assert [e.class_name for e in from_h5] == [e.class_name for e in from_png]
    for h5_example, png_example in zip(from_h5, from_png, strict=True):
        np.testing.assert_array_equal(
            sources.load_image(tmp_path, h5_example),
            sources.load_image(tmp_path, png_example),
        )
    # 0_label=0.png holds valid patch 0, which overwrote train patch 0
    # (docs/protocol.md#pcam-small)
    zero = next(e for e in sources.read_pcam_h5(tmp_path, None) if e.h5_index == 0)
    assert zero.path.endswith("split_valid_x.h5")
    assert zero.paper_path == "PCam/png_images/0_label=0.png"


def test_pcam_h5_without_emulation_keeps_every_patch(tmp_path):
    synthetic.write_pcam_h5(tmp_path, PCAM_LABELS)
    examples = sources.read_pcam_h5(tmp_path, None, emulate_png_folder=False)
    assert [e.class_name for e in examples] == [
        "no",
        "yes",
        "yes",
        "no",
        "no",
        "no",
        "yes",
    ]
    assert len({e.key for e in examples}) == 7


def test_pcam_h5_file_format(tmp_path):
    import h5py

    synthetic.write_pcam_h5(tmp_path, PCAM_LABELS)
    with h5py.File(tmp_path / sources.pcam_h5_file("train", "x"), "r") as f:
        assert f["x"].shape == (4, 96, 96, 3) and f["x"].dtype == np.uint8
    with h5py.File(tmp_path / sources.pcam_h5_file("train", "y"), "r") as f:
        assert f["y"].shape == (4, 1, 1, 1)


# Real images are greyscale for chest, knee and mammograms.
IMAGE_MODES = {
    "chest": ("L", ".jpeg"),
    "knee": ("L", ".png"),
    "mammograms": ("L", ".png"),
    "isic": ("RGB", ".jpg"),
    "breast": ("RGB", ".png"),
    "thyroid": ("RGB", ".jpg"),
    "pcam-small": ("RGB", ".png"),
}


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_images_have_the_real_format_and_a_learnable_class(tmp_path, target):
    synthetic.write_target(target, tmp_path)
    examples = _read_all(target, tmp_path)
    mode, suffix = IMAGE_MODES[target]
    brightness, labels = [], []
    for example in examples:
        assert example.path.endswith(suffix)
        with Image.open(tmp_path / example.path) as image:
            assert image.mode == mode
        brightness.append(sources.load_image(tmp_path, example).mean())
        labels.append(example.label)
    brightness, labels = np.array(brightness), np.array(labels)
    present = np.unique(labels)
    means = np.array([brightness[labels == c].mean() for c in present])
    predicted = present[np.abs(brightness[:, None] - means[None, :]).argmin(axis=1)]
    assert np.mean(predicted == labels) >= 0.9


def _error_matching(path):
    return pytest.raises(sources.LayoutError, match=re.escape(str(path)))


@pytest.mark.bad_input
def test_missing_label_file_names_it(tmp_path):
    synthetic.write_isic(tmp_path)
    (tmp_path / sources.ISIC_LABEL_FILE).unlink()
    with _error_matching(tmp_path / sources.ISIC_LABEL_FILE):
        sources.read_isic(tmp_path)


@pytest.mark.bad_input
def test_missing_knee_csv_names_it(tmp_path):
    synthetic.write_knee(tmp_path)
    (tmp_path / "knee/valid-abnormal.csv").unlink()
    with _error_matching(tmp_path / "knee/valid-abnormal.csv"):
        sources.read_knee(tmp_path)


@pytest.mark.bad_input
def test_empty_class_folder_names_it(tmp_path):
    synthetic.write_chest(tmp_path)
    folder = tmp_path / "chest_xray/val/NORMAL"
    shutil.rmtree(folder)
    folder.mkdir()
    with _error_matching(folder):
        sources.read_chest(tmp_path)


@pytest.mark.bad_input
def test_unknown_extension_names_the_folder(tmp_path):
    synthetic.write_breast(tmp_path)
    (tmp_path / "breast/notes.doc").write_text("x")
    with pytest.raises(sources.LayoutError, match="notes.doc") as error:
        sources.read_breast(tmp_path)
    assert str(tmp_path / "breast") in str(error.value)


@pytest.mark.bad_input
def test_missing_target_folder_names_the_layout(tmp_path):
    with pytest.raises(sources.LayoutError, match="Expected layout") as error:
        sources.read_thyroid(tmp_path)
    assert str(tmp_path / "thyroid") in str(error.value)


@pytest.mark.bad_input
def test_missing_mammogram_image_names_it(tmp_path):
    synthetic.write_mammograms(tmp_path)
    victim = sorted((tmp_path / "mammograms/images").iterdir())[0]
    victim.unlink()
    with _error_matching(victim):
        sources.read_mammograms(tmp_path)
    assert len(sources.read_mammograms(tmp_path, require_images=False)) > 0


@pytest.mark.bad_input
def test_bad_pcam_name_and_oversized_sample(tmp_path):
    synthetic.write_pcam_png(tmp_path, PCAM_LABELS)
    with pytest.raises(sources.LayoutError, match="Cannot sample 10000"):
        sources.read_pcam_png(tmp_path)
    bad = tmp_path / "PCam/png_images/7_label=2.png"
    bad.write_bytes(b"")
    with _error_matching(bad):
        sources.read_pcam_png(tmp_path, None)


@pytest.mark.bad_input
def test_missing_pcam_everything_names_both_layouts(tmp_path):
    with pytest.raises(sources.LayoutError, match="PCam_raw"):
        sources.read_target("pcam-small", tmp_path)
