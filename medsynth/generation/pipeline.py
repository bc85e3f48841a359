"""generate(): turn a trained inpainter into a segmentation training set on disk.

Case ``i`` depends only on ``(seed, i)``: ``numpy.random.SeedSequence([seed, i])`` is split into four
independent streams that pick the background, draw the lesion outline(s), place them, and seed the
inpainting. So a run can be split over processes, resumed, or run with any batch size and still
give the same bytes.

Batch invariance. A neural network's float results depend, in the last bits, on the shape of the
batch it is run on (measured here: ~1e-6 differences in a diffusers UNet between batch 1 and 3 on
CPU, in fp32; larger in bf16), and rounding the result to 16 bits does not hide that (values near
a rounding boundary flip). So the inpainter is always called with ROI batches of the same fixed
size ``model_batch`` (partial batches are padded with copies of their first patch), whatever
``batch_size`` is and however cases are sharded. ``batch_size`` only sets how many cases are
prepared, painted and written per step. ``model_batch`` is part of what defines the output, like
the seed and the number of steps. With ``model_batch=1`` invariance needs nothing of the network;
with larger fixed batches it relies on a sample's result not depending on its position or batch
mates at a fixed batch shape, which holds for the UNet here (per-sample GroupNorm and attention;
tested with padded batches) -- and batching pays: 1.6 vs 2.4 CPU-s per 64 px patch (25 steps) at
batch 8 vs 1 on this CPU. Images are quantised to uint16 once, before any writer sees them, so
every format stores identical values.

Safety. Every file is written atomically; a case is complete only when its record (with file
hashes) is written to the run's private state folder ``OUT/.medsynth-run/`` (:mod:`.state`); the
manifest lists complete cases only. ``resume=True`` re-does incomplete cases (same bytes) and skips
complete ones; a non-empty OUT is refused unless resuming or overwriting. When the run completes the
state folder (which holds the salt) is deleted.

Scale-out. Under ``accelerate launch`` each process takes the indices ``i % world_size == rank``;
the main process prepares OUT, all wait at a barrier, generate their share, wait again, and the
main process writes the index files, manifest and dataset card.

Device. The model runs on ``device`` (``auto``: CUDA when present, in one process too; under
``accelerate launch`` each process on its own GPU); the noise of a seed is drawn on the CPU, so it
is the same on every device. Same bytes across batch sizes, shards and resumes hold on one compute
environment: the run state records it (device, GPU, library versions, TF32, ``deterministic``),
and a resume in another one is refused unless forced (``force_resume``; the manifest then records
both). With ``deterministic`` the model runs in PyTorch's deterministic mode, TF32 off
(:mod:`medsynth.runtime`).

The module is past 450 lines because ``generate()`` reads top to bottom in numbered steps, as
diffusers' pipelines do, with the per-case steps it calls beside it; the run state lives in
:mod:`.state`, the manifest in :mod:`.manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medsynth.config import load_config
from medsynth.errors import (
    ConfigError,
    InvalidDatasetError,
    InvalidMaskError,
    InvalidModelError,
    MedsynthError,
    OutputExistsError,
)
from medsynth.generation.manifest import (
    MANIFEST_NAME,
    build_manifest,
    card_facts,
    library_versions,
    salt_fingerprint,
    salted_id,
    write_dataset_card,
    write_manifest,
)
from medsynth.generation.masks import LesionMask, MaskSource, make_mask_source, mask_settings
from medsynth.generation.placement import PlacementSettings, allowed_region, place_lesion, tissue_mask
from medsynth.generation.state import (
    STATE_DIR,
    diff_settings,
    prepare_output,
    read_records,
    read_state,
    write_record,
)
from medsynth.generation.steering import Steering
from medsynth.io.fingerprints import image_digest
from medsynth.io.writers import FORMATS, LABELS, get_writer, to_uint16
from medsynth.io.writers.atomic import remove_stale_temporaries
from medsynth.models.attributes import LESION_CLASSES
from medsynth.models.privacy import dp_record
from medsynth.runtime import (
    RESUME_KEYS,
    compute_environment,
    deterministic_mode,
    process_device,
    resolve_device,
    resume_refusal,
)
from medsynth.utils import progress_bar, sha256_file

MAX_ATTEMPTS = 25  # lesion outlines tried per lesion before a background is declared too small
MANIFEST_EVERY_S = 15.0  # rewrite the partial manifest at most this often during a run


@dataclass
class GenerationResult:
    """What a generate() call did.

    Attributes:
        out: the output folder.
        format: the output format.
        n: cases requested in total.
        generated: cases generated by this call (this process).
        skipped: cases of this process's share that were already complete (resume).
        seconds: wall time of the generation loop.
        manifest: path of manifest.json (None on processes other than the main one).
        index_files: the format's index files (dataset.json, datalist.json), relative to ``out``.
        rank, world_size: this process's share.
        lesions: lesions painted by this call, per class name.
    """

    out: Path
    format: str
    n: int
    generated: int
    skipped: int
    seconds: float
    manifest: Path | None
    index_files: list[Path] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    lesions: dict[str, int] = field(default_factory=dict)
    compute: dict[str, Any] | None = None  # compute_environment() of this process

    @property
    def cases_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Prepared:
    """One case between preparation and writing."""

    index: int
    image: np.ndarray  # float32 [0, 1]
    label: np.ndarray  # uint8
    spacing: tuple[float, float]
    background_id: str
    lesion_masks: list[np.ndarray]  # full-size bool, one per lesion
    lesions: list[dict[str, Any]]
    seeds: list[int]
    pre_existing: int
    laterality: str | None = None  # the background's breast ("L"/"R"), kept by writers that record it


def case_id(index: int) -> str:
    """The file stem of case ``index``: ``case_0000`` (at least four digits; independent of n)."""
    return f"case_{index:04d}"


STREAMS = ("background", "mask", "placement", "inpaint", "conditioning")


def case_streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """The independent random streams of case ``index``: background, mask, placement, inpaint and
    conditioning (the attributes drawn for the painter). Spawned children do not depend on how many
    are spawned, so a stream added at the end leaves the others' draws unchanged."""
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, children)}


def _file_or_dir_sha256(path: Path) -> str:
    """sha256 of a weights file, or of a folder's files (name + content hash, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def _load_model(model: Any, adapter: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """The inpainter object and its manifest facts (hashes, sampler, DP)."""
    adapter_sha = None
    if isinstance(model, (str, Path)):
        from medsynth.models.inpainter import LesionInpainter
        from medsynth.models.pretrained import WEIGHTS_NAME

        path = Path(model)
        obj = LesionInpainter.from_pretrained(path, adapter=adapter)
        sha = obj.model_card.get("base_sha256") or sha256_file(path / WEIGHTS_NAME)
    else:
        if adapter is not None:
            raise ConfigError("adapter= needs the model as a directory path (it is loaded with the base weights)")
        obj = model
        for attr in ("config", "model_card"):
            if not hasattr(obj, attr):
                raise ConfigError(f"model must be a LesionInpainter or a model directory, got {type(model).__name__}")
        sha = obj.model_card.get("base_sha256")
        if sha is None and hasattr(obj, "unet"):
            from safetensors.torch import save

            state = {k: v.detach().cpu().contiguous() for k, v in obj.unet.state_dict().items()}
            sha = hashlib.sha256(save(state)).hexdigest()
    if adapter is not None:
        adapter_path = Path(adapter)
        weights = sorted(adapter_path.glob("*.safetensors"))
        adapter_sha = sha256_file(weights[0]) if len(weights) == 1 else _file_or_dir_sha256(adapter_path)
    # The DP record: with an adapter, the composition the model's card holds once the adapter is
    # loaded (null unless both parts were trained with DP); both cards' facts beside it.
    card = getattr(obj, "model_card", {}) or {}
    config = obj.config
    facts = {
        "sha256": sha,
        "adapter_sha256": adapter_sha,
        "sampler": config.get("sampler", "ddim"),
        "image_size": int(config["image_size"]),
        "spacing_mm": float(config["spacing_mm"]),
        "dp": dp_record(card.get("dp")),
        "cards": card_facts(card),
    }
    return obj, facts


def _load_backgrounds(backgrounds: Any, spacing_mm: Any = None) -> tuple[Sequence[Any], str]:
    """The background cases and a private fingerprint of the list (for resume checks only). A
    background whose file states no pixel spacing takes ``spacing_mm`` or is refused."""
    from medsynth.io.spacing import resolve_spacing

    if isinstance(backgrounds, (str, Path)):
        from medsynth.io.datasets import load_dataset

        cases = load_dataset(backgrounds, spacing_mm=spacing_mm)
        where: Any = backgrounds
    else:
        cases = backgrounds
        where = getattr(backgrounds, "root", "<backgrounds>")
        resolve_spacing(cases, spacing_mm)
    if len(cases) == 0:
        raise InvalidDatasetError("has no images to use as backgrounds", where)
    h = hashlib.sha256(str(len(cases)).encode())
    for c in cases:
        h.update(b"\0" + str(getattr(c, "image_relpath", "") or getattr(c, "case_id", "")).encode())
    return cases, h.hexdigest()


def _dist_context(rank: int | None, world_size: int | None, barrier: Callable[[], None] | None,
                  device: Any) -> tuple[int, int, Callable[[], None], Any]:
    """(rank, world_size, barrier, device) from explicit arguments or ``accelerate``'s state; a
    launched process computes on its own GPU when ``device`` is CUDA, else on ``device``."""
    if rank is None and world_size is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        own = process_device(device, int(os.environ.get("LOCAL_RANK", "0")))  # refuses cuda:N
        state = PartialState(cpu=device.type == "cpu")
        if state.num_processes > 1:
            return state.process_index, state.num_processes, state.wait_for_everyone, \
                (state.device if state.device.type == own.type else own)
        # Launched by torchrun/accelerate without a device accelerate distributes over (CPU only):
        # the environment still names the processes, so use torch.distributed with gloo directly.
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), dist.barrier, own
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return rank, world_size, (barrier or (lambda: None)), device


def _stored_environment(out: Path) -> dict[str, Any] | None:
    """The compute environment an interrupted run in ``out`` recorded (None: no run state, or one
    written before environments were recorded)."""
    try:
        stored, _ = read_state(out / STATE_DIR, out)
    except OutputExistsError:
        return None
    return stored.get("environment")


def _existing_labels(case: Any, shape: tuple[int, int]) -> np.ndarray:
    """The background's own label map mapped to medsynth classes (2 calcification, other > 0 mass)."""
    if getattr(case, "mask", None) is None:
        return np.zeros(shape, dtype=np.uint8)
    raw = np.asarray(case.mask.pixels)
    case.mask.release()
    if raw.shape != shape:
        raise InvalidMaskError(f"background mask shape {raw.shape} differs from its image {shape}", case.mask.path)
    out = np.where(raw > 0, LABELS["mass"], 0).astype(np.uint8)
    out[raw == LABELS["calcification"]] = LABELS["calcification"]
    return out


def _laterality(case: Any) -> str | None:
    """The background's breast: the image header's laterality, else a ``laterality`` or CBIS-DDSM
    ``left_or_right_breast`` value of the case's metadata; None when none is recorded."""
    value = getattr(case.image, "laterality", None)
    meta = getattr(case, "metadata", None) or {}
    for v in (value, meta.get("laterality"), meta.get("left_or_right_breast")):
        if str(v or "").strip().upper() in ("L", "R", "LEFT", "RIGHT"):
            return str(v).strip().upper()[0]
    return None


def _prepare_case(index: int, seed: int, backgrounds: Sequence[Any], masks: MaskSource, salt: bytes,
                  placement: PlacementSettings, lesions_per_case: int, max_extent_mm: Any,
                  steering: Steering | None = None) -> _Prepared:
    """Background, outlines, placement and conditioning of case ``index`` (no model call)."""
    streams = case_streams(seed, index)
    bg = backgrounds[int(streams["background"].integers(len(backgrounds)))]
    image = np.asarray(bg.image.unit_pixels(), dtype=np.float32)
    bg.image.release()
    spacing = (float(bg.image.spacing[0]), float(bg.image.spacing[1]))
    digest = image_digest(image)  # the one image identity (medsynth.io.fingerprints)
    label = _existing_labels(bg, image.shape)
    pre_existing = int((label > 0).sum())
    tissue = tissue_mask(image)
    if not tissue.any():
        raise InvalidMaskError("background has no breast tissue (flat or empty image)", bg.image.path)
    lesion_masks: list[np.ndarray] = []
    lesions: list[dict[str, Any]] = []
    inpaint_seeds = [int(s) for s in streams["inpaint"].integers(0, 2**63 - 1, size=lesions_per_case)]
    for k in range(lesions_per_case):
        allowed = allowed_region(tissue, spacing, label > 0, placement)
        for _attempt in range(MAX_ATTEMPTS):
            lesion: LesionMask = masks.sample(streams["mask"], spacing, max_extent_mm)
            pos = place_lesion(allowed, lesion.mask, streams["placement"])
            if pos is not None:
                break
        else:
            raise InvalidMaskError(
                f"no room for lesion {k + 1} of case {index} inside the breast tissue after {MAX_ATTEMPTS} "
                "outlines (smaller --size-mm or margins may help)", bg.image.path)
        r, c = pos
        h, w = lesion.mask.shape
        full = np.zeros(image.shape, dtype=bool)
        full[r : r + h, c : c + w] = lesion.mask
        label[full] = lesion.label
        lesion_masks.append(full)
        info = dict(lesion.info)
        if "source_lesion_sha256" in info:  # a real outline: only its salted identity is written
            info["source_lesion_id"] = salted_id(salt, info.pop("source_lesion_sha256"))
        record = {
            "label": int(lesion.label),
            "bbox": [int(r), int(c), int(r + h), int(c + w)],
            "area_mm2": round(float(lesion.mask.sum()) * spacing[0] * spacing[1], 3),
            "outline": info,
            "inpaint_seed": inpaint_seeds[k],
        }
        if steering is not None:  # what the painter is asked for (attribute-conditioned models)
            record["conditioning"] = steering.attributes(lesion, bg, spacing, streams["conditioning"])
        lesions.append(record)
    return _Prepared(index, image, label, spacing, salted_id(salt, digest), lesion_masks, lesions,
                     inpaint_seeds, pre_existing, _laterality(bg))


def _inpaint_step(model: Any, cases: list[_Prepared], k: int, steps: int | None, model_batch: int,
                  guidance_scale: float | None = None, sampling: dict[str, dict[str, Any]] | None = None) -> None:
    """Paint lesion ``k`` of every case in ``cases`` (in place), calling the model in fixed-size batches.

    Each lesion's ROI is cut at the model's spacing for its class (:meth:`LesionInpainter.prepare_roi`);
    ROIs of one class and size form a group (the size depends on the lesion only), called in batches of
    ``model_batch`` padded with copies of their first patch, and the change is put back at the
    image's resolution (:meth:`LesionInpainter.finish_roi`). ``sampling`` gives a class its own
    sampler, steps and guidance (``calcification_sampling`` of configs/generate.yaml); other classes
    use ``steps`` and ``guidance_scale`` with the model's sampler.
    """
    todo = [c for c in cases if k < len(c.lesion_masks)]
    if not todo:
        return
    attributed = bool(getattr(model, "attributed", False))
    jobs = [model.prepare_roi(c.image, c.lesion_masks[k], c.spacing, c.lesions[k].get("conditioning"))
            for c in todo]
    keys = [(getattr(job, "klass", "mass"), job.patch.shape[0]) for job in jobs]
    # Checked per lesion too: a real mask source's masses, given to a dedicated calcification painter.
    _check_classes(model, {klass for klass, _ in keys}, "a mask")
    for klass, size in sorted(set(keys)):
        plan = (sampling or {}).get(klass) or {}
        group = [j for j, key in enumerate(keys) if key == (klass, size)]
        for start in range(0, len(group), model_batch):
            chunk = group[start : start + model_batch]
            # Padding keeps the model's batch shape fixed (see the module docstring).
            rows = chunk + [chunk[0]] * (model_batch - len(chunk))
            kwargs: dict[str, Any] = {}
            if attributed:
                kwargs = {"attributes": np.stack([jobs[j].codes for j in rows]),
                          "regions": np.stack([jobs[j].region for j in rows]),
                          "guidance_scale": plan.get("guidance_scale", guidance_scale)}
                if plan.get("sampler"):
                    kwargs["sampler"] = plan["sampler"]
            result = model(np.stack([jobs[j].patch for j in rows]), np.stack([jobs[j].mask for j in rows]),
                           seeds=[todo[j].seeds[k] for j in rows],
                           num_inference_steps=plan.get("num_inference_steps", steps), **kwargs)
            for row, j in enumerate(chunk):
                case = todo[j]
                case.image = model.finish_roi(case.image, jobs[j], np.asarray(result[row]), case.lesion_masks[k])


def _check_classes(model: Any, classes: Any, source: str) -> None:
    """Refuse lesion classes the model did not learn (a dedicated painter's ``classes`` setting)."""
    learnt = tuple(getattr(model, "classes", LESION_CLASSES))
    foreign = sorted(set(classes) - set(learnt))
    if foreign:
        raise ConfigError(f"the model paints only {', '.join(learnt)} (its 'classes' setting); {source} asks for "
                          f"{', '.join(foreign)}: choose the classes with --class, or use another model")


def _class_sampling(cfg: dict[str, Any], model: Any, steps: int, guidance: float) -> dict[str, dict[str, Any]]:
    """Per-class sampling of an attribute-conditioned model: ``calcification_sampling`` of the config,
    its null entries filled with what masses use. Returns {} when it sets nothing."""
    raw = cfg.get("calcification_sampling") or {}
    unknown = set(raw) - {"sampler", "num_inference_steps", "guidance_scale"}
    if unknown:
        raise ConfigError(f"unknown calcification_sampling setting(s): {', '.join(sorted(unknown))}")
    if not any(v is not None for v in raw.values()):
        return {}
    sampler = raw.get("sampler") or model.config.get("sampler", "ddim")
    try:
        model.make_sampling_scheduler(sampler)  # the model's own check of the name
    except InvalidModelError as e:
        raise ConfigError(f"calcification_sampling.sampler: {e}") from e
    n = raw.get("num_inference_steps")
    n = steps if n is None else n
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"calcification_sampling.num_inference_steps must be an integer >= 1, got {n!r}")
    g = raw.get("guidance_scale")
    g = model.resolve_guidance(guidance if g is None else float(g))
    return {"calcification": {"sampler": sampler, "num_inference_steps": n, "guidance_scale": g,
                              "unet_evaluations_per_lesion": model.unet_evaluations(n, g)}}


def generate(
    model: Any,
    backgrounds: Any,
    masks: str | MaskSource,
    n: int,
    out: str | Path,
    format: str,
    seed: int | None = None,
    adapter: str | Path | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    num_inference_steps: int | None = None,
    progress: bool = True,
    *,
    model_batch: int | None = None,
    lesions_per_case: int | None = None,
    placement: PlacementSettings | dict[str, float] | None = None,
    mask_options: dict[str, Any] | None = None,
    writer_options: dict[str, Any] | None = None,
    salt: bytes | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    barrier: Callable[[], None] | None = None,
    config: str | Path | dict[str, Any] | None = None,
    device: str | None = None,
    deterministic: bool | None = None,
    force_resume: bool = False,
    spacing_mm: Any = None,
    conditioning: dict[str, Any] | None = None,
    guidance_scale: float | None = None,
) -> GenerationResult:
    """Generate ``n`` synthetic cases (image + label map) into ``out`` in ``format``.

    Args:
        model: a model directory or a loaded :class:`~medsynth.models.inpainter.LesionInpainter`.
        backgrounds: a dataset path or a sequence of :class:`~medsynth.io.scan.Case`.
        masks: ``"shapes"``, ``"real:DATA"`` or a mask source object (see :mod:`.masks`).
        n: number of cases.
        out: output folder.
        format: ``nnunet``, ``monai``, ``dicom`` or ``png``.
        seed: the run seed; case i depends only on (seed, i).
        adapter: a LoRA adapter directory (with ``model`` given as a directory).
        batch_size: cases prepared, painted and written per step (memory; not the output).
        resume: continue an interrupted run in ``out``.
        overwrite: replace a previous medsynth output in ``out``.
        num_inference_steps: sampling steps (default: the model's config).
        progress: show a rich progress bar (main process only).
        model_batch: ROI patches per model call, fixed (padded) so results do not depend on
            ``batch_size`` or sharding; part of what defines the output.
        lesions_per_case: lesions painted into each background.
        placement: margins (:class:`~.placement.PlacementSettings` or a dict of its fields).
        mask_options: options of the mask source (``shapes``, ``margins``, ``size_mm``, ``classes``, ...).
        writer_options: options of the writer (e.g. ``dataset_id``, ``dataset_name`` for nnunet).
        salt: 32 bytes for the background identities (default: random, discarded at the end).
        rank, world_size: this process's share (default: from ``accelerate``, else 0 of 1).
        barrier: synchronisation between processes (default: accelerate's ``wait_for_everyone``).
        config: a generate config (YAML path or dict) laid over ``configs/generate.yaml``. Every
            setting left as None here (seed, batch_size, model_batch, lesions_per_case, placement,
            mask and nnU-Net writer options) comes from it.
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``;
            None: ``device`` of the config. A model object given is moved there.
        deterministic: run the model in PyTorch's deterministic mode (TF32 off); None: the config's.
        force_resume: resume a run started in another compute environment (the manifest records both).
        spacing_mm: pixel spacing (mm) of backgrounds whose files state none (never assumed:
            without it such backgrounds are refused; :mod:`medsynth.io.spacing`).
        conditioning: attributes asked of an attribute-conditioned painter beyond the outline
            (``density``, ``pathology``, ``birads``, ``subtlety``: values to draw from, or None; see
            :mod:`.steering`), laid over the config's ``conditioning`` section.
        guidance_scale: classifier-free guidance (default: the config's, else the model's own).

    Returns:
        A :class:`GenerationResult`.

    Raises:
        ConfigError: bad argument (unknown format, n < 1, ...).
        InvalidModelError: ``model`` is not a model directory.
        InvalidDatasetError: no backgrounds, or ``real:DATA`` without masks.
        OutputExistsError: ``out`` is not empty and neither resume nor overwrite was asked for.
    """
    # 1. Check inputs -- all of them before anything is written.
    cfg = load_config(config, kind="generate", overrides={
        "seed": seed, "batch_size": batch_size, "model_batch": model_batch, "lesions_per_case": lesions_per_case,
        "device": device, "deterministic": deterministic, "spacing_mm": spacing_mm})
    seed, batch_size, model_batch, lesions_per_case = (
        cfg["seed"], cfg["batch_size"], cfg["model_batch"], cfg["lesions_per_case"])
    run_device, deterministic = resolve_device(cfg["device"]), bool(cfg["deterministic"])
    resume = resume or force_resume
    if writer_options is None and format == "nnunet":
        writer_options = dict(cfg["nnunet"])
    out = Path(out)
    if format not in FORMATS:
        raise ConfigError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
    for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("model_batch", model_batch, 1),
                             ("lesions_per_case", lesions_per_case, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if num_inference_steps is not None and num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if resume and overwrite:
        raise ConfigError("give resume or overwrite, not both")
    if salt is not None and len(salt) < 16:
        raise ConfigError("salt must be at least 16 bytes")
    if not isinstance(placement, PlacementSettings):
        placement = PlacementSettings.from_config({**cfg["placement"], **(placement or {})})
    model_obj, model_facts = _load_model(model, adapter)
    steps = int(num_inference_steps or model_obj.config.get("num_inference_steps", 25))
    model_facts["num_inference_steps"] = steps
    if isinstance(masks, str):
        masks, mask_options = mask_settings(cfg["masks"], source=masks, **(mask_options or {}))
    mask_source = make_mask_source(masks, **(mask_options or {}))
    cases, backgrounds_fp = _load_backgrounds(backgrounds, cfg["spacing_mm"])
    steering = None
    if getattr(model_obj, "attributed", False):
        # What the painter is asked for (the outline's class, descriptors and size; density, ...).
        steering = Steering.from_config({**cfg["conditioning"], **(conditioning or {})})
        guidance = cfg["conditioning"]["guidance_scale"] if guidance_scale is None else guidance_scale
        model_facts["guidance_scale"] = model_obj.resolve_guidance(guidance)
        model_facts["unet_evaluations_per_lesion"] = model_obj.unet_evaluations(steps, model_facts["guidance_scale"])
        model_facts["calcification_spacing_mm"] = model_obj.spacing_for("calcification")
        sampling = _class_sampling(cfg, model_obj, steps, model_facts["guidance_scale"])
        if sampling:
            model_facts["class_sampling"] = sampling
        max_extent_mm: Any = {k: model_obj.max_extent_mm(k) for k in LESION_CLASSES}
        smallest = min(max_extent_mm.values())
    else:
        guidance, sampling = None, {}
        roi_mm = model_facts["image_size"] * model_facts["spacing_mm"]
        max_extent_mm = smallest = roi_mm - 2.0 * float(model_obj.config.get("roi_margin_mm", 2.0))
    if smallest <= 0:
        raise ConfigError(f"the model's ROI ({model_facts['image_size']} px) leaves no room for a lesion")
    asked = set(getattr(mask_source, "classes", ()) or ())
    _check_classes(model_obj, asked, "the run")  # before anything is written
    unproven = sorted(asked - set(cfg["classes_shown_to_help"]))
    if unproven:
        warnings.warn(
            f"painted {', '.join(unproven)} lesions have not been shown to raise segmentation Dice "
            "(BENCHMARKS.md, 'Lesions worth training on'); check them with `medsynth evaluate --utility` "
            "before training on them", UserWarning, stacklevel=2)

    public = {
        "format": format,
        "seed": int(seed),
        "model": model_facts,
        "masks": mask_source.describe(),
        "conditioning": steering.describe() if steering is not None else None,
        "placement": asdict(placement),
        "lesions_per_case": int(lesions_per_case),
        "model_batch": int(model_batch),
        "labels": dict(LABELS),
        "writer": {k: v for k, v in sorted((writer_options or {}).items()) if k != "uid_entropy"},
    }
    uid_entropy = hashlib.sha256(json.dumps(public, sort_keys=True).encode()).hexdigest()
    settings = dict(public, backgrounds=backgrounds_fp)
    options = dict(writer_options or {})
    if format == "dicom":
        options.setdefault("uid_entropy", uid_entropy)
    writer = get_writer(format, out, **options)

    # 2. Processes, the device and the output folder (main process first, then everyone).
    rank, world_size, wait, run_device = _dist_context(rank, world_size, barrier, run_device)
    if hasattr(model_obj, "to"):
        model_obj.to(run_device)
    with deterministic_mode(deterministic):
        environment = compute_environment(run_device, deterministic)
    settings["environment"] = {k: environment[k] for k in RESUME_KEYS}
    if resume:
        stored_env = _stored_environment(out)
        if stored_env is None and (out / STATE_DIR / "run.json").is_file():
            settings.pop("environment")  # a run state from before environments were recorded: nothing to compare
        refusal = resume_refusal(stored_env, environment, "the interrupted run")
        if refusal and not force_resume:
            raise OutputExistsError(refusal, out)
        if refusal:  # forced: the run continues under its recorded settings; the manifest lists both
            settings["environment"] = stored_env
            environment = {**environment, "previous": [stored_env]}
    status = "worker"
    if rank == 0:
        status = prepare_output(out, settings, public, salt, n, resume, overwrite)
        # Before the barrier: once it passes, other processes' temporaries are live files.
        remove_stale_temporaries(out)
    wait()
    state = out / STATE_DIR
    if status == "done":
        return GenerationResult(out, format, n, 0, 0, 0.0, out / MANIFEST_NAME, [], rank, world_size)
    stored, run_salt = read_state(state, out)
    if diff_settings(stored, settings):
        raise OutputExistsError(
            f"run state was made with other settings ({', '.join(diff_settings(stored, settings))})", out
        )
    header = dict(public, salt_sha256=salt_fingerprint(run_salt), versions=library_versions(), compute=environment)

    # 3. Generate this process's share, batch by batch.
    records = read_records(state)
    mine = [i for i in range(n) if i % world_size == rank]
    todo = [i for i in mine if i not in records]
    skipped = len(mine) - len(todo)
    painted: dict[str, int] = {}
    t0 = time.perf_counter()
    last_manifest = t0
    with progress_bar(progress and rank == 0, "{task.fields[rate]}", transient=False) as bar:
        task = bar.add_task("generate", total=len(mine), completed=skipped, rate="")
        for start in range(0, len(todo), batch_size):
            step = [_prepare_case(i, seed, cases, mask_source, run_salt, placement, lesions_per_case, max_extent_mm,
                                  steering) for i in todo[start : start + batch_size]]
            for k in range(lesions_per_case):
                with deterministic_mode(deterministic):
                    _inpaint_step(model_obj, step, k, steps, model_batch, guidance, sampling)
            for case in step:
                cid = case_id(case.index)
                files = writer.write_case(cid, to_uint16(case.image), case.label, case.spacing,
                                          laterality=case.laterality)
                record = {
                    "index": case.index,
                    "case_id": cid,
                    "seed": [int(seed), case.index],
                    "files": {
                        role: {"path": rel.as_posix(), "sha256": sha256_file(out / rel)} for role, rel in files.items()
                    },
                    "background": {
                        "id": case.background_id,
                        "shape": list(case.image.shape),
                        "spacing_mm": [round(s, 6) for s in case.spacing],
                        "pre_existing_lesion_pixels": case.pre_existing,
                    },
                    "lesions": case.lesions,
                }
                write_record(state, record)
                records[case.index] = record
                for les in case.lesions:
                    name = "calcification" if les["label"] == LABELS["calcification"] else "mass"
                    painted[name] = painted.get(name, 0) + 1
            elapsed = time.perf_counter() - t0
            rate = (start + len(step)) / elapsed if elapsed > 0 else 0.0
            bar.update(task, advance=len(step), rate=f"{rate:.2f} cases/s")
            if rank == 0 and world_size == 1 and time.perf_counter() - last_manifest > MANIFEST_EVERY_S:
                write_manifest(out, build_manifest(header, list(records.values()), n))
                last_manifest = time.perf_counter()
    seconds = time.perf_counter() - t0

    # 4. Main process: wait for the others, then index files, manifest and dataset card.
    wait()
    if rank != 0:
        return GenerationResult(out, format, n, len(todo), skipped, seconds, None, [], rank, world_size, painted,
                                environment)
    records = read_records(state)
    missing = [i for i in range(n) if i not in records]
    if missing:
        raise MedsynthError(f"{len(missing)} case(s) were not generated by any process (first: {missing[:5]}); "
                            "run again with --resume", out)
    ordered = [records[i] for i in range(n)]
    index_files = writer.finalize([r["case_id"] for r in ordered])
    manifest = build_manifest(header, ordered, n)
    write_dataset_card(out, manifest, [p.as_posix() for p in index_files])
    manifest_path = write_manifest(out, manifest)
    shutil.rmtree(state)
    return GenerationResult(out, format, n, len(todo), skipped, seconds, manifest_path, index_files, rank,
                            world_size, painted, environment)
