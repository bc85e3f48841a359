"""Training loop of the lesion inpainter (also drives LoRA fine-tuning).

One loop, top to bottom: config → patches → model → ``Accelerator`` (device, mixed precision,
multi-GPU with ``accelerate launch``) → optional DP (opacus) → steps with EMA → atomic checkpoints
→ the EMA weights saved as a model directory with its model card.

Exact resume: a checkpoint (``OUT/checkpoints/checkpoint.pt``, written atomically) holds the model,
optimizer, LR scheduler, EMA, the state of the random generators with a history (Poisson
sampling, DP noise, torch's global one) and, under DP, the accountant's history; batches,
augmentations, noise and timesteps are drawn from a generator seeded by (seed, process, step). A run stopped
at step k and resumed reaches the same weights as an uninterrupted run would from the same
generator states (on the same machine and settings; not in opacus' secure mode, whose noise cannot
be replayed). Under DP with csprng noise those states are the only copy of the secret noise seeds:
the checkpoint is private, and they are dropped from it when the run finishes.

A checkpoint holds only tensors and plain data (dicts, lists, numbers, strings), checked when it is
written, and is read with ``torch.load(weights_only=True)``: a checkpoint carrying a pickled object
(which could run code when loaded) is refused.

Device and reproducibility (:mod:`medsynth.runtime`): ``training.device`` (``auto``: CUDA when
present) places the model, and every tensor of a step is drawn on the CPU from the step's generator
and moved there, so the draws do not depend on the device. The checkpoint records the compute
environment; a resume in another one (device, GPU, library versions, TF32, deterministic) is refused
unless forced. ``training.deterministic`` runs the loop in PyTorch's deterministic mode (bitwise
exact resume on a GPU too); under fp16 the GradScaler's state is checkpointed. Under several
processes (``accelerate launch``) the time limit is a flag reduced across them, so every process
stops at the same step and none is left waiting in a collective.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from medsynth.config import load_config
from medsynth.errors import ConfigError, InvalidModelError, OutputExistsError, PrivacyError
from medsynth.io.writers.atomic import atomic_write_bytes
from medsynth.models.attributes import LESION_CLASSES
from medsynth.models.data import PatchBank, augment_batch, build_patch_bank
from medsynth.models.inpainter import LesionInpainter, build_unet, diffusion_loss, make_noise_scheduler
from medsynth.models.pretrained import CONFIG_NAME, versions
from medsynth.models.privacy import (
    DPSettings,
    PrivateTraining,
    check_dp_precision,
    dp_generators,
    dp_noise_of,
    make_private,
)
from medsynth.runtime import (
    compute_environment,
    deterministic_mode,
    process_device,
    resolve_device,
    resolve_mixed_precision,
    resume_refusal,
)
from medsynth.utils import derive_seed, progress_bar

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "checkpoint.pt"


def make_accelerator(mixed_precision: str, device: str | torch.device | None = None):
    """An ``Accelerator`` for this run on ``device`` (``auto``/None: CUDA when present, else the CPU;
    under several processes each takes its own GPU). In a single process the shared state is reset
    first, so runs with different precisions or devices can follow each other in one Python session
    (tests, notebooks).

    Raises:
        ConfigError: an unknown precision, a device this machine lacks, fp16 on the CPU (accelerate
            scales the loss on GPUs only, so small fp16 gradients would underflow).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {mixed_precision!r}")
    dev = resolve_device(device)
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if not single:
        dev = process_device(dev, int(os.environ.get("LOCAL_RANK", "0")))  # refuses cuda:N
    if mixed_precision == "fp16" and dev.type == "cpu":
        raise ConfigError("mixed_precision fp16 needs a GPU: on the CPU it runs without loss scaling (accelerate's "
                          "GradScaler works on GPUs), so small gradients underflow; use bf16 or no")
    shared = AcceleratorState._shared_state
    cpu = dev.type == "cpu"
    if single and shared and (shared.get("_mixed_precision") != mixed_precision
                              or bool(PartialState._shared_state.get("_cpu")) != cpu):
        AcceleratorState._reset_state(reset_partial_state=True)
    if single and dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # accelerate's single-process device is the current one
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


@dataclass
class LoopResult:
    """What :func:`run_loop` hands back."""

    module: torch.nn.Module  # the trained model, EMA weights copied in, unwrapped
    step: int
    finished: bool
    dp: dict[str, Any] | None
    seconds: float
    loss: float
    main_process: bool = True  # False on the other processes of a multi-GPU run: they save nothing
    environment: dict[str, Any] | None = None  # compute_environment() of this run, "previous" when resumed elsewhere


def run_loop(
    module: torch.nn.Module,
    bank: PatchBank,
    model_config: dict[str, Any],
    train_cfg: dict[str, Any],
    data_cfg: dict[str, Any],
    ckpt_path: Path,
    resume: bool,
    dp: DPSettings | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    description: str = "training",
    force_resume: bool = False,
) -> LoopResult:
    """Train ``module``'s trainable parameters on ``bank`` for ``train_cfg["steps"]`` steps, in
    PyTorch's deterministic mode when ``train_cfg["deterministic"]`` is set (see :func:`_loop` for
    the arguments; ``force_resume`` resumes a checkpoint made in another compute environment)."""
    with deterministic_mode(bool(train_cfg.get("deterministic"))):
        return _loop(module, bank, model_config, train_cfg, data_cfg, ckpt_path, resume, dp, max_steps, progress,
                     description, force_resume)


def _loop(
    module: torch.nn.Module,
    bank: PatchBank,
    model_config: dict[str, Any],
    train_cfg: dict[str, Any],
    data_cfg: dict[str, Any],
    ckpt_path: Path,
    resume: bool,
    dp: DPSettings | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    description: str = "training",
    force_resume: bool = False,
) -> LoopResult:
    """Train ``module``'s trainable parameters on ``bank`` for ``train_cfg["steps"]`` steps.

    Args:
        module: a UNet (or a peft-wrapped one: only its trainable parameters are trained).
        bank: the training patches.
        model_config: the inpainter config (loss weights, conditional, schedule).
        train_cfg: the ``training`` section (steps, batch_size, learning_rate, ...).
        data_cfg: the ``data`` section (augmentations).
        ckpt_path: checkpoint file.
        resume: continue from ``ckpt_path``.
        dp: DP settings or None.
        max_steps: stop (with a checkpoint) after this many total steps even if ``steps`` is larger;
            used to interrupt a run on purpose (tests, time-boxed jobs).
        progress: show a rich progress bar with the loss.
        description: the progress bar's label.
        force_resume: resume a checkpoint made in another compute environment.
    """
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    total = int(train_cfg["steps"])
    stop_at = min(total, int(max_steps)) if max_steps is not None else total
    batch_size = int(train_cfg["batch_size"])
    seed = int(train_cfg["seed"])
    mp = resolve_mixed_precision(str(train_cfg["mixed_precision"]), resolve_device(train_cfg.get("device")).type)
    if dp is not None:
        check_dp_precision(mp)
    accelerator = make_accelerator(mp, train_cfg.get("device"))
    device = accelerator.device
    environment = compute_environment(device, bool(train_cfg.get("deterministic")))
    history: list[dict[str, Any]] = []  # earlier environments of a forced resume
    if train_cfg.get("torch_threads"):
        # On a shared CPU fewer threads can be much faster (no spinning at OpenMP barriers).
        torch.set_num_threads(int(train_cfg["torch_threads"]))
    # Seed everything the run draws from; each stream has its own generator so it can be checkpointed.
    torch.manual_seed(seed)
    # Batch indices, augmentations, noise, timesteps: reseeded every step from (seed, process, step),
    # so it has no state to checkpoint.
    gen = torch.Generator()
    loader_gen: torch.Generator | None = None  # Poisson sampling (DP)
    noise_gen: torch.Generator | None = None  # DP noise
    module.to(device)
    if train_cfg.get("channels_last") and dp is None:
        module.to(memory_format=torch.channels_last)  # NHWC convolutions: faster with bf16/fp16 on GPUs and AMX CPUs
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise InvalidModelError("the model has no trainable parameter")
    optimizer = torch.optim.AdamW(
        params, lr=float(train_cfg["learning_rate"]), weight_decay=float(train_cfg["weight_decay"])
    )
    noise_scheduler = make_noise_scheduler(model_config)
    private: PrivateTraining | None = None
    if dp is not None:
        if device.type != "cpu" and accelerator.num_processes > 1:
            raise PrivacyError("DP training with several processes is not supported here; run on one device")
        # Poisson sampling on the CPU, the noise on the parameters' device (opacus draws it there);
        # csprng noise seeds both from os.urandom, and the seeds are kept nowhere.
        loader_gen, noise_gen = dp_generators(dp, params[0].device, seed)
        loader = torch.utils.data.DataLoader(bank, batch_size=batch_size, shuffle=True, generator=loader_gen)
        private = make_private(module, optimizer, loader, dp, total, noise_generator=noise_gen)
        if private.secure_mode:
            loader_gen = noise_gen = None  # opacus' secure RNG draws both; it has no state to keep
        model, optimizer = private.module, private.optimizer
    else:
        model, optimizer = accelerator.prepare(module, optimizer)
    # opacus' GradSampleModule and accelerate's wrappers (DDP) wrap ``module`` itself, not a copy: its
    # state is the run's, so checkpoints save and load ``module``'s state dict, without the wrappers' prefixes.
    lr_scheduler = get_scheduler(
        str(train_cfg["lr_scheduler"]), optimizer=optimizer,
        num_warmup_steps=int(train_cfg["warmup_steps"]), num_training_steps=total,
    )
    ema = EMAModel(params, decay=float(train_cfg["ema_decay"]))
    step = 0
    if resume:
        state = _load_checkpoint(ckpt_path)
        if state["fingerprint"] != bank.info["fingerprint"]:
            raise InvalidModelError("checkpoint was made with other training data (fingerprint differs)", ckpt_path)
        refusal = resume_refusal(state.get("environment"), environment, "the checkpoint")
        if refusal and not force_resume:
            raise InvalidModelError(refusal, ckpt_path)
        history = list(state.get("environments") or [])
        if refusal and state.get("environment") not in history:
            history.append(state["environment"])
        if dp is not None:
            if state.get("accountant") is None:
                raise PrivacyError("checkpoint has no DP accountant state; it was trained without DP", ckpt_path)
            if int(state["dp"]["planned_steps"]) != total:
                raise PrivacyError(
                    f"DP run planned {state['dp']['planned_steps']} steps; resume with the same --steps", ckpt_path)
            if dp_noise_of(state["dp"]) != dp.noise:
                raise PrivacyError(f"checkpoint's DP noise is {dp_noise_of(state['dp'])!r}, this run's {dp.noise!r}; "
                                   "resume with the same noise setting (--dp-seeded-noise or not)", ckpt_path)
            private.engine.accountant.load_state_dict(state["accountant"])
        elif state.get("accountant") is not None:
            raise PrivacyError("checkpoint is from a DP run; resume it with --dp", ckpt_path)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        restore_ema(ema, state["ema"], params[0].device)
        restore_generator(noise_gen, state.get("noise_gen"), ckpt_path)
        restore_generator(loader_gen, state.get("loader_gen"), ckpt_path)
        torch.set_rng_state(state["torch_rng"])
        if state.get("grad_scaler") and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["grad_scaler"])  # fp16 loss scale and its growth counter
        step = int(state["step"])
    batches = _poisson_batches(private.loader) if private is not None else None
    n = len(bank)
    T = int(model_config["num_train_timesteps"])
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
    loss_value = float("nan")
    started = time.perf_counter()
    bar = progress_bar(progress, "loss {task.fields[loss]:.4f}", transient=False)
    task = bar.add_task(description, total=total, completed=step, loss=float("nan"))
    with warnings.catch_warnings(), bar:
        # opacus' full backward hooks fire on the first layer, whose input needs no gradient: harmless.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        while step < stop_at:
            # 1. A batch: uniform draws (plain) or Poisson sampling (DP), then augmentations. The
            # stream is reseeded from (seed, process, step): every process of a multi-GPU run draws
            # its own batches, and a resumed run draws what the uninterrupted one would have.
            seed_step(gen, seed, accelerator.process_index, step)
            if batches is not None:
                images, masks, healthy, codes, spacing = next(batches)
            else:
                idx = torch.randint(0, n, (batch_size,), generator=gen)
                images, masks, healthy, codes, spacing = (
                    bank.images[idx][:, None],
                    bank.masks[idx][:, None].float(),
                    bank.healthy[idx].float(),
                    bank.codes[idx],
                    bank.spacing[idx],
                )
            empty = images.shape[0] == 0
            if empty:
                # An empty Poisson batch (DP, small sample rate). There is nothing to run the UNet on,
                # but the step must still happen: DP-SGD adds noise to a zero gradient and the
                # accountant counts the step, or the stated ε would not hold.
                for p in params:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                loss = torch.tensor(float("nan"))
            else:
                # 2. Conditioning: attribute codes with condition dropout and the editable regions
                # (attribute-conditioned model), or the lesion/healthy label (the first model).
                images, masks, extra = conditioning_batch(images, masks, healthy, codes, spacing, gen, model_config,
                                                          data_cfg)
                b = images.shape[0]
                noise = torch.randn(images.shape, generator=gen)
                timesteps = torch.randint(0, T, (b,), generator=gen)
                labels = (1 - healthy).long()
                x0, masks = (images * 2.0 - 1.0).to(device), masks.to(device)
                extra = {k: v.to(device) for k, v in extra.items()}
                # 3. Loss and update.
                with torch.autocast(
                    device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
                ):
                    per_sample = diffusion_loss(
                        model,
                        noise_scheduler,
                        x0,
                        masks,
                        noise.to(device),
                        timesteps.to(device),
                        model_config,
                        labels=labels.to(device),
                        **extra,
                    )
                loss = per_sample.mean()
            if private is not None:
                if not empty:
                    loss.backward()
            else:
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, float(train_cfg["max_grad_norm"]))
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(params)
            step += 1
            if not empty:
                loss_value = float(loss.detach())
            bar.update(task, completed=step, loss=loss_value)
            # 4. Checkpoint now and then, and whenever the run stops (also on the time limit).
            limit = train_cfg.get("time_limit_minutes")
            if stop_requested(accelerator, bool(limit) and time.perf_counter() - started > 60.0 * float(limit)):
                stop_at = min(stop_at, step)
            if step % int(train_cfg["checkpoint_every"]) == 0 or step == stop_at:
                if accelerator.is_main_process:
                    # csprng DP noise: its generator states are the secret seeds; kept while the run can
                    # resume, dropped once it is finished.
                    keep_gens = private is None or dp.noise == "seeded" or step < total
                    _save_checkpoint(ckpt_path, {
                        "step": step,
                        "total_steps": total,
                        "model": module.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": lr_scheduler.state_dict(),
                        "ema": ema.state_dict(),
                        "loader_gen": loader_gen.get_state() if loader_gen is not None and keep_gens else None,
                        "noise_gen": noise_gen.get_state() if noise_gen is not None and keep_gens else None,
                        "torch_rng": torch.get_rng_state(),
                        "fingerprint": bank.info["fingerprint"],
                        "model_config": model_config,
                        "accountant": private.engine.accountant.state_dict() if private else None,
                        "dp": private.card(step) if private else None,
                        "grad_scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                        "environment": environment,
                        "environments": history,
                    })
    seconds = time.perf_counter() - started
    dp_card = private.card(step) if private is not None else None
    ema.copy_to(params)
    if private is not None:
        inner = private.module.to_standard_module()  # opacus' hooks and per-sample gradients removed
    else:
        inner = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    inner.eval()
    accelerator.wait_for_everyone()
    if history:
        environment = {**environment, "previous": history}
    return LoopResult(inner, step, step >= total, dp_card, seconds, loss_value, accelerator.is_main_process,
                      environment)


def stop_requested(accelerator: Any, mine: bool) -> bool:
    """Whether the run stops now: ``mine`` (this process's own reason, e.g. its clock passed the time
    limit) reduced across processes, so that every process stops at the same step. Clocks of
    different processes disagree; a process that left the loop alone would leave the others waiting
    in the next step's gradient all-reduce for ever. One process: ``mine``."""
    if accelerator.num_processes == 1:
        return mine
    if mine:
        accelerator.set_trigger()
    return bool(accelerator.check_trigger())


def conditioning_batch(images: torch.Tensor, masks: torch.Tensor, healthy: torch.Tensor, codes: torch.Tensor,
                       spacing: torch.Tensor, gen: torch.Generator, model_config: dict[str, Any],
                       data_cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Augment a batch and build what the loss is conditioned on, all randomness from ``gen``.

    For the attribute-conditioned model: condition dropout of the descriptors (classifier-free
    guidance) and the editable regions (each mask grown by ``band_mm`` in its patch's pixels, for
    every class but calcification). The first model gets neither (``extra`` is empty).
    """
    from medsynth.models import attributes as attrs
    from medsynth.models.inpainter import disk_dilate, is_attributed, vocabulary_of

    if not is_attributed(model_config):
        images, masks = augment_batch(images, masks, healthy, gen, float(model_config["spacing_mm"]), data_cfg)
        return images, masks, {}
    images, masks = augment_batch(images, masks, healthy, gen, spacing, data_cfg)
    vocab = vocabulary_of(model_config)
    codes = attrs.drop_descriptors(codes, float(model_config["condition_dropout"]),
                                   float(model_config["descriptor_dropout"]), gen, vocab)
    calc = codes[:, 0] == attrs.offsets(vocab)["class"] + 1 + list(vocab["class"]).index("calcification")
    band_px = torch.where(calc, 0.0, float(model_config.get("band_mm") or 0.0) / spacing)
    return images, masks, {"codes": codes, "region": disk_dilate(masks, band_px)}


def seed_step(gen: torch.Generator, seed: int, process: int, step: int) -> torch.Generator:
    """Reseed ``gen`` for one step's draws (batch indices, augmentations, noise, timesteps) from
    (seed, process, step) alone: each process of a multi-GPU run draws its own batches, and a
    resumed run draws what the uninterrupted one would have."""
    return gen.manual_seed(derive_seed(seed, process, step))


def _poisson_batches(loader: Any):
    """Endless Poisson-sampled batches of a DPDataLoader.

    Draws straight from its batch sampler (whose generator is checkpointed) instead of iterating
    the DataLoader: a new DataLoader iterator draws a base seed from that same generator, which
    would shift the sample stream at epoch boundaries and break exact resume.
    """
    while True:
        for indices in loader.batch_sampler:
            yield loader.collate_fn([loader.dataset[i] for i in indices])


def restore_ema(ema: Any, state: dict[str, Any], device: torch.device | str) -> None:
    """Load an EMA state and move its shadow parameters to the parameters' ``device``: diffusers'
    ``EMAModel.load_state_dict`` keeps them where the checkpoint was loaded (the CPU), and ``ema.step``
    would then mix CPU and CUDA tensors."""
    ema.load_state_dict(state)
    ema.to(device=device)


def restore_generator(gen: torch.Generator | None, state: torch.Tensor | None, path: Path) -> None:
    """Set ``gen`` (created on the parameters' device) to a checkpointed state; nothing to do when
    either is None (no DP, secure mode, or a finished csprng run whose states were dropped)."""
    if gen is None or state is None:
        return
    try:
        gen.set_state(state)
    except (RuntimeError, TypeError) as e:
        raise InvalidModelError(f"the checkpoint's generator state does not fit a {gen.device} generator "
                                f"(saved on another device?) ({e})", path) from e


def plain_data_problem(obj: Any, where: str = "checkpoint") -> str | None:
    """Where ``obj`` holds something other than tensors and plain data (what ``torch.load(weights_only=True)``
    reads back without running code), or None."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size, torch.dtype)):
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                return f"{where} has a key of type {type(k).__name__}"
            problem = plain_data_problem(v, f"{where}[{k!r}]")
            if problem:
                return problem
        return None
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            problem = plain_data_problem(v, f"{where}[{i}]")
            if problem:
                return problem
        return None
    return f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}"


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    problem = plain_data_problem(state)
    if problem:  # a programming error: it would be refused when resuming
        raise TypeError(f"a checkpoint holds only tensors and plain data; {problem}")
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, no code can run."""
    if not path.is_file():
        raise InvalidModelError("no checkpoint to resume from", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"it refers to {found.group(1)}" if found else str(e).strip().splitlines()[-1][:200]
        raise InvalidModelError(
            "refused: the checkpoint holds a pickled Python object, not only tensors and plain data, and loading "
            f"it could run code ({what})", path) from e
    except Exception as e:  # a truncated or foreign file: say which one
        raise InvalidModelError(f"cannot read checkpoint ({e})", path) from e
    if not isinstance(state, dict) or "step" not in state:
        raise InvalidModelError("not a medsynth training checkpoint", path)
    return state


def check_output_dir(out: Path, resume: bool, marker: str) -> Path:
    """The checkpoint path in ``out``; refuses to overwrite a finished or running model unless resuming."""
    ckpt = out / CHECKPOINT_DIR / CHECKPOINT_NAME
    if resume:
        if not ckpt.is_file():
            raise InvalidModelError("nothing to resume: no checkpoint here", out)
    elif ckpt.is_file() or (out / marker).is_file():
        raise OutputExistsError("already holds a model or checkpoint; pass --resume or choose an empty folder", out)
    return ckpt


def bank_options(model_config: dict[str, Any]) -> dict[str, Any]:
    """The model settings :func:`build_patch_bank` needs: the calcification spacing, the band, the classes."""
    if not (model_config["conditional"] and model_config.get("attributes")):
        return {}
    return {"calcification_spacing_mm": model_config.get("calcification_spacing_mm"),
            "band_mm": float(model_config.get("band_mm") or 0.0), "classes": model_config.get("classes")}


def resolve_data_settings(model_config: dict[str, Any], bank: PatchBank) -> dict[str, Any]:
    """The model config with its "auto" settings replaced by what the training data gave: the
    calcification spacing and the texture transmission per class (1 where not measured); and the
    classes of a dedicated painter (its bank's, where the config leaves ``classes`` null)."""
    config = dict(model_config)
    if config.get("calcification_spacing_mm") == "auto":
        config["calcification_spacing_mm"] = float(bank.info.get("calcification_spacing_mm") or config["spacing_mm"])
    if config.get("texture_transmission") == "auto":
        measured = bank.info.get("texture_transmission") or {}
        config["texture_transmission"] = {k: float(min(1.0, measured.get(k, 1.0))) for k in LESION_CLASSES}
    learnt = bank.info.get("classes")
    if config.get("classes") is None and learnt and set(learnt) != set(LESION_CLASSES):
        config["classes"] = list(learnt)  # a bank cut for a dedicated painter: generate refuses other classes
    return config


def train(
    data: Any,
    out: str | Path,
    config: str | Path | dict[str, Any] | None = None,
    steps: int | None = None,
    image_size: int | None = None,
    resume: bool = False,
    dp: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
    device: str | None = None,
    force_resume: bool = False,
    **overrides: Any,
) -> LesionInpainter:
    """Train a lesion inpainter and save it (EMA weights) in ``out``.

    Args:
        data: a dataset path (anything ``load_dataset`` reads), a Dataset of Cases, a list of
            (image, mask, spacing) tuples, or a ready :class:`PatchBank`.
        out: the model directory (checkpoints go to ``out/checkpoints``).
        config: a YAML path, a packaged config name or a dict over ``configs/train.yaml``.
        steps: training steps (overrides the config).
        image_size: patch size in pixels (overrides the config).
        resume: continue from ``out/checkpoints/checkpoint.pt``.
        dp: None (no DP), True (the config's ``dp`` section) or a dict/DPSettings (target_epsilon,
            target_delta, max_grad_norm, noise ("csprng" default, or "seeded": an experiment),
            secure_mode, accountant).
        progress: show progress.
        max_steps: stop after this many steps (checkpoint written, no model saved): an interrupt.
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``;
            None: ``training.device`` of the config. Under ``accelerate launch`` each process takes
            its own GPU.
        force_resume: resume a checkpoint made in another compute environment (device, GPU, library
            versions, TF32, deterministic); the model card then lists both.
        **overrides: any setting of the model/training/data sections, e.g. ``batch_size=8``,
            ``conditional=False`` (an unconditional model for RePaint), ``mixed_precision="bf16"``,
            ``deterministic=True`` (PyTorch's deterministic algorithms, TF32 off; see :mod:`medsynth.runtime`).

    Returns:
        The trained model (also saved in ``out`` when the run finished).

    Raises:
        ConfigError, OutputExistsError, InvalidDatasetError, PrivacyError, InvalidModelError.
    """
    cfg = load_config(config, kind="train",
                      overrides={"steps": steps, "image_size": image_size, "device": device, **overrides})
    device_type = resolve_device(cfg["training"]["device"]).type  # a device this machine lacks fails first
    resume = resume or force_resume
    out = Path(out)
    ckpt = check_output_dir(out, resume, CONFIG_NAME)
    model_config = cfg["model"]
    settings = DPSettings.from_any(dp, cfg["dp"])
    if settings is not None:
        check_dp_precision(resolve_mixed_precision(str(cfg["training"]["mixed_precision"]), device_type))
    bank = data if isinstance(data, PatchBank) else build_patch_bank(
        data, int(model_config["image_size"]), float(model_config["spacing_mm"]), cfg["data"],
        seed=int(cfg["training"]["seed"]), progress=progress, **bank_options(model_config),
    )
    model_config = resolve_data_settings(model_config, bank)
    torch.manual_seed(int(cfg["training"]["seed"]))
    unet = build_unet(model_config)
    cfg["training"]["mixed_precision"] = resolve_mixed_precision(str(cfg["training"]["mixed_precision"]), device_type)
    result = run_loop(unet, bank, model_config, cfg["training"], cfg["data"], ckpt, resume, settings,
                      max_steps=max_steps, progress=progress, force_resume=force_resume)
    card = {
        "name": "medsynth lesion inpainter",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": bank.info,
        "training": {
            **{k: cfg["training"][k] for k in ("batch_size", "learning_rate", "lr_scheduler", "warmup_steps",
                                               "ema_decay", "mixed_precision", "seed")},
            "steps": result.step,
            "planned_steps": int(cfg["training"]["steps"]),
            "seconds_this_run": round(result.seconds, 1),
            "final_loss": result.loss,
            "augmentations": {k: cfg["data"][k] for k in ("flips", "intensity_jitter")},
        },
        "dp": result.dp,
        "compute": result.environment,
        "versions": versions(),
    }
    model = LesionInpainter(model_config, result.module, card)
    if result.finished and result.main_process:
        model.save_pretrained(out)
    elif max_steps is None:
        warnings.warn(f"training stopped at step {result.step} of {cfg['training']['steps']}", stacklevel=2)
    return model
