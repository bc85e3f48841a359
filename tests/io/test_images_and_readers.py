"""PNG/TIFF reader against scikit-image's reader, and load_scan's choice of reader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import io as skio

from medsynth.errors import InvalidImageError
from medsynth.io.readers import load_scan, sniff_format


@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.uint16, 16)])
def test_png_label_maps_read_like_skimage(tmp_path, build, dtype, bits):
    labels = np.zeros((40, 30), dtype=dtype)
    labels[5:15, 5:12] = 1
    labels[20:30, 10:25] = 2
    path = build.png(tmp_path / f"mask{bits}.png", labels)
    scan = load_scan(path)
    assert scan.shape == (40, 30) and scan.bits_stored == bits
    np.testing.assert_array_equal(scan.pixels, skio.imread(path).astype(np.float32))
    assert set(np.unique(scan.pixels)) == {0.0, 1.0, 2.0}


def test_tiff_and_dpi_spacing(tmp_path):
    arr = (np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 7)
    path = tmp_path / "x.tif"
    Image.fromarray(arr).save(path, dpi=(254, 127))  # 0.1 mm across columns, 0.2 mm down rows
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.pixels, skio.imread(path).astype(np.float32))
    assert scan.spacing == pytest.approx((0.2, 0.1), rel=1e-3)


def test_gray_saved_as_rgb_is_accepted_colour_is_not(tmp_path):
    gray = np.tile(np.arange(30, dtype=np.uint8), (20, 1))
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_scan(tmp_path / "g.png").pixels, gray)
    colour = np.stack([gray, gray[:, ::-1], gray], axis=-1)
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(InvalidImageError, match="colour"):
        load_scan(tmp_path / "c.png").pixels


def test_reader_chosen_by_content_when_suffix_misleads(tmp_path, build):
    img = build.phantom_like()
    dcm = build.dicom(tmp_path / "a.dcm", img)
    no_suffix = tmp_path / "IM0001"
    no_suffix.write_bytes(dcm.read_bytes())
    misnamed = tmp_path / "b.png"
    misnamed.write_bytes(dcm.read_bytes())
    for path in (no_suffix, misnamed):
        assert sniff_format(path) == "dicom"
        np.testing.assert_array_equal(load_scan(path).pixels, img.astype(np.float32))


def test_every_reader_reason_is_listed(tmp_path):
    path = tmp_path / "fake.png"  # PNG suffix, DICOM signature, but broken after it
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    with pytest.raises(InvalidImageError) as info:
        load_scan(path)
    message = str(info.value)
    assert "fake.png" in message and "image:" in message and "dicom:" in message


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidImageError, match="unknown image format"):
        load_scan(path)
    with pytest.raises(FileNotFoundError, match="missing.dcm"):
        load_scan(tmp_path / "missing.dcm")


def test_dicom_is_recognised_by_its_preamble(tmp_path, build):
    """With the 128-byte preamble and "DICM" a file is DICOM whatever its name; without them it is
    not (pydicom.misc.is_dicom), and reading it says so, naming the file."""
    from medsynth.auditing.phi import is_dicom

    with_preamble = build.dicom(tmp_path / "with.dcm", build.phantom_like())
    bare = tmp_path / "IM0001"
    bare.write_bytes(with_preamble.read_bytes())
    stripped = tmp_path / "IM0002"
    stripped.write_bytes(with_preamble.read_bytes()[132:])  # the file meta group first, no preamble
    assert (sniff_format(bare), is_dicom(bare)) == ("dicom", True)
    assert (sniff_format(stripped), is_dicom(stripped)) == (None, False)
    with pytest.raises(InvalidImageError, match=r"IM0002.*not a DICOM file"):
        load_scan(stripped.rename(tmp_path / "IM0002.dcm"))
