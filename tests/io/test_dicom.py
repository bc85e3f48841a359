"""DICOM reader: real pydicom files, display polarity, compressed syntaxes, broken files, frames.

References are pydicom's own full decode (``dcmread(...).pixel_array`` + ``apply_modality_lut`` /
``apply_voi_lut``), never medsynth's output."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from medsynth.errors import InvalidImageError
from medsynth.io.dicom import read_dicom
from medsynth.io.phi import find_phi
from medsynth.io.readers import load_scan


def _reference(path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float32)


# ----------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_pydicom_test_files_read_like_pydicom(name):
    path = get_testdata_file(name)
    scan = load_scan(path)
    ds = pydicom.dcmread(path)
    assert scan.shape == (ds.Rows, ds.Columns)
    assert scan.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert scan.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(scan.pixels, _reference(path))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_pydicom_compressed_files_equal_uncompressed(name):
    scan = load_scan(get_testdata_file(name))
    assert scan.transfer_syntax != "Explicit VR Little Endian"
    np.testing.assert_array_equal(scan.pixels, _reference(get_testdata_file("MR_small.dcm")))


def test_pydicom_monochrome1_file_is_inverted_over_its_output_range():
    path = get_testdata_file("6154")  # a MONOCHROME1 CR with RescaleSlope 0.684
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    scan = load_scan(path)
    modality = _reference(path)
    lo, hi = scan.metadata["value_range"]
    # pydicom's range for the stored bits after the modality LUT.
    assert (lo, hi) == pytest.approx(tuple(sorted(apply_modality_lut(np.array([0, 2**ds.BitsStored - 1]), ds))))
    np.testing.assert_allclose(scan.pixels, (lo + hi) - modality, rtol=1e-6)
    # Denser (brighter) = lower stored value in MONOCHROME1: the order is reversed.
    assert np.corrcoef(scan.pixels.ravel(), ds.pixel_array.ravel())[0, 1] == pytest.approx(-1.0)
    assert scan.bits_stored is None  # range is not [0, 2**bits - 1], so unit_pixels uses the image's own


def test_multiframe_pydicom_file_frames():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    for k in (0, 7, 14):
        scan = load_scan(path, frame=k)
        assert scan.metadata["n_frames"] == 15
        np.testing.assert_array_equal(scan.pixels, apply_modality_lut(ds.pixel_array[k], ds).astype(np.float32))
    with pytest.raises(InvalidImageError, match="frame 15"):
        load_scan(path, frame=15)


# ----------------------------------------------------------------------------- polarity


def test_monochrome1_reads_like_monochrome2(tmp_path, build):
    img = build.phantom_like(bits=12)
    top = 2**12 - 1
    m2 = load_scan(build.dicom(tmp_path / "m2.dcm", img))
    m1 = load_scan(build.dicom(tmp_path / "m1.dcm", (top - img).astype(np.uint16), photometric="MONOCHROME1"))
    m1_inv = load_scan(
        build.dicom(
            tmp_path / "m1i.dcm", (top - img).astype(np.uint16), photometric="MONOCHROME1", presentation="INVERSE"
        )
    )
    m2_id = load_scan(build.dicom(tmp_path / "m2i.dcm", img, presentation="IDENTITY"))
    np.testing.assert_array_equal(m2.pixels, img.astype(np.float32))
    for other in (m1, m1_inv, m2_id):
        np.testing.assert_array_equal(other.pixels, m2.pixels)  # no double inversion for MONOCHROME1 + INVERSE
        np.testing.assert_array_equal(other.unit_pixels(), m2.unit_pixels())
        assert other.bits_stored == 12
    assert m2.unit_pixels().max() == 1.0 and m2.unit_pixels().min() == 0.0
    assert m1.metadata["inverted"] and not m2.metadata["inverted"]


def test_nonconforming_inverse_on_monochrome2_is_inverted_with_warning(tmp_path, build, caplog):
    img = build.phantom_like(bits=12)
    with caplog.at_level(logging.WARNING, logger="medsynth.io.dicom"):
        scan = load_scan(build.dicom(tmp_path / "x.dcm", img, presentation="INVERSE"))
    np.testing.assert_array_equal(scan.pixels, (4095 - img).astype(np.float32))
    assert "non-conforming" in caplog.text


def test_modality_lut_comes_before_inversion(tmp_path, build):
    img = build.phantom_like(bits=12)
    m2 = load_scan(build.dicom(tmp_path / "m2.dcm", img, rescale=(2.0, 10.0)))
    m1 = load_scan(
        build.dicom(
            tmp_path / "m1.dcm", (4095 - img).astype(np.uint16), photometric="MONOCHROME1", rescale=(2.0, 10.0)
        )
    )
    np.testing.assert_array_equal(m2.pixels, img * 2.0 + 10.0)
    np.testing.assert_array_equal(m1.pixels, m2.pixels)
    assert m2.metadata["value_range"] == (10.0, 4095 * 2.0 + 10.0)


def test_window_is_off_by_default_and_matches_pydicom_when_asked(tmp_path, build):
    img = build.phantom_like(bits=12)
    path = build.dicom(tmp_path / "w.dcm", img, window=(1500.0, 1000.0))
    raw = load_scan(path)
    np.testing.assert_array_equal(raw.pixels, img.astype(np.float32))  # full range, not clipped
    windowed = load_scan(path, window=True)
    ds = pydicom.dcmread(path)
    np.testing.assert_allclose(windowed.pixels, apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds), rtol=1e-6)
    # MONOCHROME1 windowed: the mirrored window (PS3.3 C.11.2.1.2: centre c maps x = c - 0.5, so the
    # mirror of c is 4095 - c + 1) gives the same display as MONOCHROME2: VOI first, inversion last.
    m1 = load_scan(build.dicom(tmp_path / "w1.dcm", (4095 - img).astype(np.uint16), photometric="MONOCHROME1",
                               window=(4095 - 1500.0 + 1, 1000.0)), window=True)
    np.testing.assert_allclose(m1.pixels, windowed.pixels, atol=1e-3)


# ----------------------------------------------------------------------------- compression


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_copies_read_equal_to_uncompressed(tmp_path, build, syntax):
    img = build.phantom_like(shape=(64, 48), bits=12, seed=3)
    plain = load_scan(build.dicom(tmp_path / "plain.dcm", img))
    packed_path = build.dicom(tmp_path / "packed.dcm", img, transfer_syntax=syntax)
    packed = load_scan(packed_path)
    assert packed.transfer_syntax == syntax.name
    assert pydicom.dcmread(packed_path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(packed.pixels, plain.pixels)
    np.testing.assert_array_equal(packed.pixels, img.astype(np.float32))


def test_compressed_multiframe_frame_access(tmp_path, build):
    frames = np.stack([build.phantom_like(shape=(32, 32), seed=s) for s in range(3)])
    path = build.dicom(tmp_path / "mf.dcm", frames, transfer_syntax=RLELossless, extra={"NumberOfFrames": 3})
    for k in range(3):
        np.testing.assert_array_equal(load_scan(path, frame=k).pixels, frames[k].astype(np.float32))


# ----------------------------------------------------------------------------- broken files


def test_pixels_are_decoded_lazily(tmp_path, build):
    path = build.dicom(tmp_path / "lazy.dcm", build.phantom_like())
    scan = load_scan(path)
    assert scan._pixels is None
    path.write_bytes(path.read_bytes()[:400])  # pixels gone after the header was read
    with pytest.raises(InvalidImageError, match="lazy.dcm"):
        scan.pixels


def _with_pixel_length(src, dst, extra: int) -> None:
    """Copy a native explicit-VR file with ``extra`` bytes added to (or cut from) PixelData,
    writing the true, possibly odd, length into the element header (pydicom would pad it)."""
    data = bytearray(open(src, "rb").read())
    i = data.rfind(b"\xe0\x7f\x10\x00OW")
    length = struct.unpack("<I", data[i + 8 : i + 12])[0]
    pixels = bytes(data[i + 12 : i + 12 + length])
    pixels = pixels + b"\x07" * extra if extra >= 0 else pixels[:extra]
    data[i + 8 : i + 12] = struct.pack("<I", len(pixels))
    dst.write_bytes(bytes(data[: i + 12]) + pixels + bytes(data[i + 12 + length :]))


def test_cbis_ddsm_one_extra_byte_is_read_with_warning(tmp_path, build, caplog):
    img = build.phantom_like()
    src = build.dicom(tmp_path / "src.dcm", img)
    _with_pixel_length(src, tmp_path / "odd.dcm", 1)
    assert len(pydicom.dcmread(tmp_path / "odd.dcm").PixelData) == img.size * 2 + 1
    with caplog.at_level(logging.WARNING, logger="medsynth.io.dicom"):
        scan = load_scan(tmp_path / "odd.dcm")
        np.testing.assert_array_equal(scan.pixels, img.astype(np.float32))
    assert "odd.dcm" in caplog.text and "CBIS-DDSM" in caplog.text


def test_short_pixel_data_is_an_error_naming_the_file(tmp_path, build):
    src = build.dicom(tmp_path / "src.dcm", build.phantom_like())
    _with_pixel_length(src, tmp_path / "short.dcm", -2)
    with pytest.raises(InvalidImageError, match=r"short\.dcm.*shorter than"):
        load_scan(tmp_path / "short.dcm")


@pytest.mark.parametrize("syntax", [None, RLELossless, JPEG2000Lossless])
def test_truncated_files_are_errors(tmp_path, build, syntax):
    path = build.dicom(tmp_path / "whole.dcm", build.phantom_like(seed=5), transfer_syntax=syntax)
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 300])
    with pytest.raises(InvalidImageError, match=r"cut\.dcm.*truncated"):
        load_scan(cut).pixels


def test_pydicom_truncated_test_file_is_an_error():
    with pytest.raises(InvalidImageError, match="MR_truncated.dcm.*truncated"):
        load_scan(get_testdata_file("MR_truncated.dcm"))


def test_file_without_pixel_data_is_an_error(tmp_path, build):
    path = build.dicom(tmp_path / "nopix.dcm", build.phantom_like())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(InvalidImageError, match=r"nopix\.dcm.*no PixelData"):
        load_scan(path)
    with pytest.raises(InvalidImageError, match="no PixelData"):
        load_scan(get_testdata_file("rtplan.dcm"))


def test_non_dicom_named_dcm_is_an_error(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not a DICOM file\n" * 20)
    with pytest.raises(InvalidImageError, match=r"notes\.dcm.*not a DICOM file"):
        load_scan(path)


def test_colour_dicom_is_rejected():
    with pytest.raises(InvalidImageError, match="colour"):
        read_dicom(get_testdata_file("SC_rgb_rle.dcm"))


# ----------------------------------------------------------------------------- header facts


def test_header_facts_and_phi(tmp_path, build):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.PatientName = "Hidden^In^Sequence"
    path = build.dicom(
        tmp_path / "phi.dcm",
        build.phantom_like(),
        extra={"RequestAttributesSequence": [item], "BurnedInAnnotation": "YES"},
    )
    ds = pydicom.dcmread(path)
    ds.private_block(0x0009, "DECOY CREATOR", create=True).add_new(0x01, "LO", "secret")
    ds.save_as(path)
    scan = load_scan(path)
    assert (scan.laterality, scan.view, scan.modality) == ("L", "CC", "MG")
    assert scan.spacing == (0.2, 0.15)  # PixelSpacing wins over ImagerPixelSpacing
    assert scan.metadata["burned_in_annotation"] == "YES"
    found = find_phi(pydicom.dcmread(path, stop_before_pixels=True))
    assert {"PatientName", "PatientID", "RequestAttributesSequence[0].PatientName"} <= set(found["phi"])
    assert any(p.startswith("(0009,") for p in found["private"])


def test_voi_lut_sequence_when_windowing(tmp_path, build):
    from pydicom.dataset import Dataset

    img = build.phantom_like(bits=12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new(0x00283006, "US", [int(v) for v in np.sqrt(np.arange(4096) / 4095) * 4095])  # LUTData
    path = build.dicom(tmp_path / "lut.dcm", img, extra={"VOILUTSequence": [item]})
    ds = pydicom.dcmread(path)
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
    np.testing.assert_array_equal(load_scan(path, window=True).pixels, reference)
    np.testing.assert_array_equal(load_scan(path).pixels, img.astype(np.float32))  # not applied by default


def test_dicomdir_is_not_an_image_and_is_not_followed():
    with pytest.raises(InvalidImageError, match="no PixelData"):
        load_scan(get_testdata_file("DICOMDIR"))



@pytest.mark.parametrize(
    "keyword,vr,raw",
    [("RescaleSlope", "DS", b"abc "), ("NumberOfFrames", "IS", b"2x"), ("WindowCenter", "DS", b"mid "),
     ("Rows", "US", b"\x01\x02\x03\x04")],
)
def test_a_malformed_header_value_is_one_error_naming_the_attribute(tmp_path, build, keyword, vr, raw):
    """Every header value goes through medsynth.io.dicom_header.header_value: a value that does not
    parse is an InvalidImageError naming the file and the attribute, never a bare ValueError."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    path = build.dicom(tmp_path / "bad.dcm", build.phantom_like(), window=(2048, 4096))
    ds = pydicom.dcmread(path)
    tag = Tag(tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)  # written as these bytes
    ds.save_as(path)
    with pytest.raises(InvalidImageError, match=rf"bad\.dcm: attribute {keyword} ") as info:
        load_scan(path, window=True).pixels
    assert "Traceback" not in str(info.value)
