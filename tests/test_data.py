"""Loading image folders and TFDS sets, minority subsets, the demo set."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from keras_ganaug.data import images as data
from keras_ganaug.data.demo import draw_lesion
from keras_ganaug.errors import UserError


def _save(path, array, fmt=None, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path, format=fmt)


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes with PNG, JPEG, L, RGBA, mixed sizes and a JPEG behind a .png name."""
    rng = np.random.default_rng(0)
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 200
    a = tmp_path / "train" / "a"
    _save(a / "rgb.png", red)
    _save(a / "gray.png", np.full((50, 50), 90, np.uint8))
    _save(a / "rgba.png", np.dstack([red, np.full((40, 60), 255, np.uint8)]))
    _save(a / "jpeg_named.png", red, fmt="JPEG")
    _save(a / "big.jpg", rng.integers(0, 255, (300, 200, 3), dtype=np.uint8))
    b = tmp_path / "train" / "b"
    for i in range(5):
        _save(b / f"b{i}.png", np.full((32, 32, 3), 30 * i, np.uint8))
    return tmp_path


def test_loader_decodes_every_format_to_the_requested_shape(mixed_folder):
    images = data.list_image_folder(mixed_folder, "train")
    assert images.class_names == ("a", "b")
    assert images.counts() == {"a": 5, "b": 5}
    arrays, labels, loaded, report = data.load_images(images, 32, 3)
    assert arrays.shape == (10, 32, 32, 3) and arrays.dtype == np.uint8
    by_name = {f.split("/")[-1]: arr for f, arr in zip(loaded.files, arrays, strict=True)}
    # The JPEG behind a .png name decodes to the same red as the real PNG (JPEG is lossy: +-8).
    assert abs(int(by_name["jpeg_named.png"][..., 0].mean()) - 200) < 8
    assert by_name["rgba.png"][..., 0].mean() == pytest.approx(200, abs=1)
    assert np.all(by_name["gray.png"] == 90)  # L -> RGB replicates the grey level
    assert report.converted_modes == {"L": 1, "RGBA": 1}
    gray, _, _, _ = data.load_images(images, 32, 1)
    assert gray.shape == (10, 32, 32, 1)


def test_pad_keeps_the_whole_image_and_crop_fills_the_square(tmp_path):
    wide = np.zeros((20, 80, 3), np.uint8)
    wide[:, :10] = 255  # a white stripe at the left edge: cropped away, kept by padding
    _save(tmp_path / "train" / "x" / "wide.png", wide)
    images = data.list_image_folder(tmp_path, "train")
    cropped, *_ = data.load_images(images, 32, 3, resize_mode="crop")
    padded, *_ = data.load_images(images, 32, 3, resize_mode="pad")
    assert cropped[0].max() == 0
    assert padded[0].max() == 255


def test_corrupt_images_fail_by_name_or_are_skipped(tmp_path):
    folder = tmp_path / "train" / "x"
    _save(folder / "good.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    images = data.list_image_folder(tmp_path, "train")
    with pytest.raises(UserError, match="empty.png.*and 1 more.*--skip-bad-images"):
        data.load_images(images, 16, 3)
    arrays, _, loaded, report = data.load_images(images, 16, 3, skip_bad_images=True)
    assert len(arrays) == 1 and loaded.files[0].endswith("good.png")
    assert sorted(p.split("/")[-1] for p in report.skipped) == ["empty.png", "truncated.jpg"]


def test_subsets_are_deterministic_nested_and_leave_other_classes_alone(demo_root):
    images = data.list_image_folder(demo_root, "train")
    small = data.select_real(images, "malignant", 5, seed=3)
    again = data.select_real(images, "malignant", 5, seed=3)
    larger = data.select_real(images, "malignant", 10, seed=3)
    other_seed = data.select_real(images, "malignant", 5, seed=4)
    assert small.files == again.files
    assert small.counts() == {"benign": 48, "malignant": 5}
    mal = lambda s: {f for f, lab in zip(s.files, s.labels, strict=True) if lab == 1}  # noqa: E731
    assert mal(small) < mal(larger)
    assert mal(small) != mal(other_seed)
    with pytest.raises(UserError, match="--n-real 25: class 'malignant' has 24"):
        data.select_real(images, "malignant", 25, seed=0)
    with pytest.raises(UserError, match="class 'nevus' not found"):
        data.select_real(images, "nevus", 5, seed=0)


def test_dataset_scales_to_minus_one_one():
    images = np.array([[[[0, 128, 255]]]], np.uint8).repeat(4, 0)
    ds = data.make_dataset(images, np.zeros(4, np.int32), 2, shuffle=False, seed=0)
    batch, labels = next(iter(ds))
    assert batch.shape == (2, 1, 1, 3) and labels.dtype.name == "int32"
    np.testing.assert_allclose(batch.numpy()[0, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_array_equal(data.to_uint8(batch).numpy(), images[:2])


def test_demo_lesions_follow_the_abcd_rule():
    """Malignant demo lesions have more colour spread than benign ones (the C of ABCD)."""
    rng = np.random.default_rng(0)

    def lesion_colour_spread(malignant):
        spreads = []
        for _ in range(10):
            centre = draw_lesion(rng, malignant)[24:40, 24:40].astype(float)  # inside the lesion
            spreads.append(centre.reshape(-1, 3).std(0).mean())
        return np.median(spreads)

    assert lesion_colour_spread(True) > 1.5 * lesion_colour_spread(False)


def test_tfds_source_loads_offline_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        images = data.list_images("tfds:mnist", "train")
    assert images.class_names[:2] == ("0", "1") and len(images.files) == 6
    arrays, labels, _, _ = data.load_images(images, 32, 3)
    assert arrays.shape == (6, 32, 32, 3) and labels.shape == (6,)


def test_real_skin_images_load(skin_root):
    images = data.select_real(data.list_image_folder(skin_root, "train"), "malignant", 10, seed=0)
    arrays, _, _, _ = data.load_images(data.only_class(images, "malignant"), 64, 3)
    assert arrays.shape == (10, 64, 64, 3) and 40 < arrays.mean() < 220
