"""pydicom's own test corpus, all of it, through what ``medsynth info`` does (header, PHI walk, pixels).

Every file either reads or gives a MedsynthError naming the file; never another exception (issue 15,
point 11: ``badVR.dcm``'s NumberOfFrames ``'1A'`` used to end in a traceback and exit code 1).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pydicom.misc
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from medsynth.cli import main
from medsynth.errors import InvalidImageError, MedsynthError
from medsynth.io.inspect import describe


def test_every_corpus_file_reads_or_fails_with_a_medsynth_error(caplog):
    files = [Path(f) for f in get_testdata_files()]
    assert len(files) > 80  # the whole corpus is installed (pydicom 3.0 ships ~190 files and folders)
    read, refused, crashed = [], [], []
    with warnings.catch_warnings(), caplog.at_level(logging.CRITICAL):
        warnings.simplefilter("ignore")
        for path in files:
            try:
                describe(path)
                read.append(path.name)
            except MedsynthError as e:
                refused.append(path.name)
                if path.name not in str(e):
                    crashed.append(f"{path}: the error does not name the file: {e}")
            except Exception as e:  # noqa: BLE001 - what the test is looking for
                crashed.append(f"{path}: {type(e).__name__}: {e}")
    assert not crashed, "\n".join(crashed)
    # Grayscale images of every transfer syntax read; colour, non-image and broken files are refused.
    assert len(read) >= 50 and {"CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"} <= set(read)
    assert "badVR.dcm" in refused and "SC_rgb_rle.dcm" in refused


def test_a_malformed_header_value_names_the_file_and_the_attribute():
    path = get_testdata_file("badVR.dcm")
    with pytest.raises(InvalidImageError, match=r"badVR\.dcm: attribute NumberOfFrames has a malformed value '1A'"):
        describe(path)


def test_info_on_a_malformed_value_exits_2_with_one_line(capsys):
    path = get_testdata_file("badVR.dcm")
    assert main(["info", path]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "NumberOfFrames" in err and "badVR.dcm" in err
    assert len(err.strip().splitlines()) <= 3  # one message (rich may soft-wrap a long path)


def test_is_dicom_agrees_with_the_hand_written_check_it_replaced():
    """``pydicom.misc.is_dicom`` replaced medsynth's own "DICM at offset 128" test: same answer on
    every file of the corpus (with and without preamble)."""

    def old_check(path: Path) -> bool:
        with open(path, "rb") as fp:
            head = fp.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"

    files = [Path(f) for f in get_testdata_files() if Path(f).is_file()]
    answers = {str(f): pydicom.misc.is_dicom(f) for f in files}
    assert answers == {str(f): old_check(f) for f in files}
    assert True in answers.values() and False in answers.values()
