"""OCR of text burned into pixels (the audit's ``phi_pixel_text``): time per image and what is caught.

On 512 x 416 phantoms (the default phantom size): ``n`` images with the decoy name, MRN and date
burned in (``--burned-in-text``) and the same ``n`` images without text. Reported: seconds per image
with and without text, images flagged, the share of burned-in decoys (name, MRN, date) matched to the
training headers they came from, and false alarms on the clean images. A large image (the phantom
upscaled 4x to 2048 x 1664, text ~44 px high) is read at ``max_side_px`` 1024 (the default) and 2048.

    python -m benchmarks.bench_ocr [--quick]

Needs the ``ocr`` extra (``pip install 'medsynth[ocr]'``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS = {"quick": {"n": 4, "size": [512, 416]}, "full": {"n": 20, "size": [512, 416]}}
DECOYS = ("DICOM PatientName", "DICOM PatientID", "DICOM StudyDate")


def run(quick: bool = False, **overrides: Any) -> list[dict[str, Any]]:
    from skimage.transform import resize

    from medsynth.auditing.ocr import PixelTextReader, ocr_unavailable
    from medsynth.auditing.phi import check_pixel_text, match_pixel_text, training_identifiers
    from medsynth.config import load_config
    from medsynth.io.datasets import load_dataset
    from medsynth.phantoms import make_phantoms

    why = ocr_unavailable()
    if why:
        raise RuntimeError(why)
    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    n, size = int(s["n"]), tuple(s["size"])
    cfg = load_config(None, kind="audit")["phi"]
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, note: str = "") -> None:
        rows.append({"benchmark": "ocr", "metric": metric, "value": value, "unit": unit, "note": note})

    with tempfile.TemporaryDirectory(prefix="bench_ocr_") as tmp:
        work = Path(tmp)
        train = make_phantoms(work / "train", n, seed=3, size=size)
        text = load_dataset(make_phantoms(work / "text", n, seed=3, size=size, layout="folder", burned_in_text=True))
        clean = load_dataset(make_phantoms(work / "clean", n, seed=3, size=size, layout="folder"))
        idents = training_identifiers(load_dataset(train), train, cfg)
        reader = PixelTextReader(max_side_px=int(cfg["ocr"]["max_side_px"]), min_score=float(cfg["ocr"]["min_score"]))
        reader.read(clean[0].image.unit_pixels())  # load the models before timing

        t0, c0 = time.perf_counter(), time.process_time()
        res_clean = check_pixel_text(clean, idents, cfg["ocr"], reader=reader)
        t_clean, c_clean = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        t0, c0 = time.perf_counter(), time.process_time()
        res_text = check_pixel_text(text, idents, cfg["ocr"], reader=reader)
        t_text, c_text = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        matched = {(f.file, f.kind) for f in res_text.findings if f.kind in DECOYS}
        row(f"seconds per image, {size[0]}x{size[1]}, no text", t_clean, "s", f"wall; {c_clean:.3f} CPU-s; {n} images")
        row(f"seconds per image, {size[0]}x{size[1]}, 3 lines of text", t_text, "s",
            f"wall; {c_text:.3f} CPU-s; {n} images")
        row("images with burned-in text flagged", res_text.n_images_with_text, "images", f"of {n}")
        row("decoys matched to training headers", len(matched) / (3 * n), "share",
            "name, MRN, date of each image (OCR misreads lose some)")
        for kind in DECOYS:
            row(f"  {kind[6:]} matched", sum(k == kind for _, k in matched), "images", f"of {n}")
        row("clean images flagged (false alarms)", res_clean.n_images_with_text, "images", f"of {n}")

        big = resize(text[1].image.unit_pixels(), (size[0] * 4, size[1] * 4), order=1, preserve_range=True)
        for side in (1024, 2048):
            big_reader = PixelTextReader(max_side_px=side, min_score=float(cfg["ocr"]["min_score"]))
            big_reader.read(big[:64, :64])
            t0, c0 = time.perf_counter(), time.process_time()
            lines = [t for t, _ in big_reader.read(big)]
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            kinds = sorted(i.kind[6:] for i in match_pixel_text(lines, idents) if i.kind in DECOYS)
            row(f"seconds, {size[0] * 4}x{size[1] * 4} image, max_side_px {side}", dt, "s",
                f"wall; {dc:.2f} CPU-s; matched: {', '.join(kinds) or 'nothing'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    from benchmarks._common import quick_main

    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
