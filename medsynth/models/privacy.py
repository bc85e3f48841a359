"""Differential privacy for training (opacus): DP-SGD with Poisson sampling, unpredictable noise,
ε accounting, and the checks that keep the accountant's guarantee honest.

- The model is checked with ``ModuleValidator.validate`` before anything else (no BatchNorm).
- Only a plain DataLoader (random or sequential sampler) is accepted; opacus replaces its sampler
  by Poisson sampling. A loader with a custom or weighted sampler is refused with
  :class:`PrivacyError`: the RDP/PRV accountants assume Poisson sampling and such a loader would
  break the guarantee silently.
- The noise multiplier is opacus' ``get_noise_multiplier`` for the planned number of steps (given
  as steps, not rounded from epochs), passed to ``PrivacyEngine.make_private``; the ε actually
  spent is asked from the accountant and recorded in the model card and in every checkpoint (with
  the accountant's state, so a resumed run keeps counting). :func:`recompute_epsilon` recomputes it
  from a card's σ, sample rate, steps and δ with a fresh opacus accountant (the audit does).
- **The noise must be unpredictable** (``noise``): the guarantee assumes the adversary cannot
  replay the Gaussian noise nor the Poisson sampling. By default (``"csprng"``) both generators
  are seeded from the operating system's CSPRNG (``os.urandom``); the seeds are never written
  anywhere, and the generators' states live only in the private checkpoint (for exact resume) and
  are dropped from it when the run finishes. Where ``torchcsprng`` imports, opacus' ``secure_mode``
  (AES-CTR random device generator, and noise summed from several draws against floating-point
  attacks) is used instead (``secure_mode: auto``). ``"seeded"`` noise (generators seeded from
  ``training.seed``) replays exactly and is for experiments only: it certifies nothing, and cards
  say so (``dp.noise = "seeded"``).
- The noise generator lives on the parameters' device: opacus draws the noise with
  ``torch.normal(..., device=<the gradient's device>, generator=gen)``, which refuses a CPU
  generator for CUDA tensors.
- fp16 mixed precision with DP is refused (:func:`check_dp_precision`): the DP path runs no
  GradScaler, so per-sample gradients of ~1e-6 would underflow; bf16 is fine.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from medsynth.config import load_config
from medsynth.errors import PrivacyError

if TYPE_CHECKING:  # torch is imported where it is used: the card rules here are read without it
    import torch
    from torch.utils.data import DataLoader

NOISE_SOURCES = ("csprng", "seeded")


@dataclass
class DPSettings:
    """What the user asks for; the defaults are the ``dp`` section of ``configs/train.yaml``
    (:meth:`from_any`).

    Attributes:
        target_epsilon: ε to reach at the end of the planned steps.
        target_delta: δ (well below 1 / number of training patches).
        max_grad_norm: per-sample gradient clipping bound C.
        noise: "csprng" (default): noise and Poisson sampling from generators seeded by the OS's
            CSPRNG, seeds never recorded, so (ε, δ) holds; "seeded": from ``training.seed``, replayable
            by anyone who reads the card: an experiment, no formal guarantee.
        secure_mode: opacus' secure mode (torchcsprng's random device generator): "auto" (default)
            uses it where torchcsprng imports (csprng noise only), True requires it, False never.
            Exact resume is then impossible (its noise has no state to checkpoint).
        accountant: "rdp" or "prv".
        grad_sample_mode: opacus' per-sample gradient mode. "functorch" (default) is exact on the UNet;
            "hooks" (faster) returns zero per-sample gradients for convs fed by diffusers' attention
            blocks, whose outputs are channels_last in memory (opacus 1.6; benchmarks/bench_dp.py).
    """

    target_epsilon: float
    target_delta: float
    max_grad_norm: float
    noise: str
    secure_mode: Any
    accountant: str
    grad_sample_mode: str

    @classmethod
    def from_any(cls, dp: Any, defaults: dict[str, Any] | None = None) -> "DPSettings | None":
        """None/False → None; True → the defaults; a dict or DPSettings → laid over the defaults.

        Args:
            dp: what the caller asked for.
            defaults: the ``dp`` section of the run's config; ``configs/train.yaml``'s when None.

        Raises:
            PrivacyError: an unknown setting or a value out of range.
        """
        if dp is None or dp is False:
            return None
        base = dict(defaults if defaults is not None else load_config(None, kind="train")["dp"])
        if isinstance(dp, DPSettings):
            base.update(asdict(dp))
        elif isinstance(dp, dict):
            base.update(dp)
        elif dp is not True:
            raise PrivacyError(f"dp must be None, True, a dict or DPSettings, got {type(dp).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(base) - known)
        if unknown:
            raise PrivacyError(f"unknown DP setting(s) {unknown}; known: {sorted(known)}")
        missing = sorted(known - set(base))
        if missing:
            raise PrivacyError(f"DP setting(s) {missing} missing from the config's dp section")
        settings = cls(**base)
        if not (settings.target_epsilon > 0 and 0 < settings.target_delta < 1 and settings.max_grad_norm > 0):
            raise PrivacyError(
                f"need target_epsilon > 0, 0 < target_delta < 1 and max_grad_norm > 0, got {asdict(settings)}"
            )
        if settings.accountant not in ("rdp", "prv"):
            raise PrivacyError(f"accountant must be 'rdp' or 'prv', got {settings.accountant!r}")
        if settings.noise not in NOISE_SOURCES:
            raise PrivacyError(f"dp noise must be one of {NOISE_SOURCES}, got {settings.noise!r}")
        if settings.secure_mode not in ("auto", True, False):
            raise PrivacyError(f"secure_mode must be 'auto', true or false, got {settings.secure_mode!r}")
        if settings.noise == "seeded" and settings.secure_mode is True:
            raise PrivacyError("seeded DP noise and secure_mode exclude each other: secure noise cannot be seeded")
        return settings

    def use_secure_mode(self) -> bool:
        """Whether opacus' secure mode is used: required (True), or "auto" with torchcsprng importable;
        never with seeded noise."""
        if self.noise == "seeded" or self.secure_mode is False:
            return False
        if self.secure_mode is True:
            return True
        return importlib.util.find_spec("torchcsprng") is not None


def csprng_seed() -> int:
    """A 64-bit seed from the operating system's CSPRNG; it is used once and never stored."""
    return int.from_bytes(os.urandom(8), "little")


def dp_generators(settings: DPSettings, device: torch.device | str, seed: int) -> tuple[torch.Generator,
                                                                                         torch.Generator]:
    """The generators of Poisson sampling (CPU: opacus' sampler draws ``torch.rand(n)`` there) and of
    the DP noise (on ``device``, the parameters' device: opacus draws the noise there).

    csprng noise seeds both from :func:`csprng_seed`; seeded noise from ``seed + 1`` and ``seed + 2``.
    """
    import torch

    loader_gen = torch.Generator()
    noise_gen = torch.Generator(device=device)
    if settings.noise == "seeded":
        loader_gen.manual_seed(seed + 1)
        noise_gen.manual_seed(seed + 2)
    else:
        loader_gen.manual_seed(csprng_seed())
        noise_gen.manual_seed(csprng_seed())
    return loader_gen, noise_gen


def check_dp_precision(mixed_precision: str) -> None:
    """Refuse fp16 with DP: the DP path skips accelerate's GradScaler, so fp16 per-sample gradients
    (~1e-6 per pixel) would underflow to zero silently. bf16 keeps fp32's exponent range."""
    if str(mixed_precision) == "fp16":
        raise PrivacyError(
            "mixed_precision fp16 with DP is refused: DP-SGD runs without a GradScaler, so fp16 per-sample "
            "gradients underflow; use --mixed-precision bf16 (same range as fp32) or no"
        )


def dp_noise_of(dp: dict[str, Any] | None) -> str | None:
    """The noise source a card's ``dp`` entry records; a card from before ``noise`` was recorded
    counts as seeded unless it ran in secure mode (its noise came from ``training.seed``)."""
    if not dp:
        return None
    noise = dp.get("noise")
    if noise in NOISE_SOURCES:
        return str(noise)
    return "csprng" if dp.get("secure_mode") is True else "seeded"


# What a manifest or a card summary keeps of a ``dp`` entry: what recomputing ε needs, and the noise source.
DP_RECORD_KEYS = ("epsilon", "delta", "accountant", "noise_multiplier", "max_grad_norm", "sample_rate", "steps",
                  "noise", "secure_mode", "poisson_sampling")


def dp_record(dp: dict[str, Any] | None) -> dict[str, Any] | None:
    """The facts of a ``dp`` entry worth publishing (a composed one keeps its parts'), with ``noise``
    made explicit (:func:`dp_noise_of`); None for no DP."""
    if not dp:
        return None
    out = {k: dp[k] for k in DP_RECORD_KEYS if k in dp}
    out["noise"] = dp_noise_of(dp)
    if isinstance(dp.get("parts"), dict):
        out["composition"] = dp.get("composition", "basic")
        out["parts"] = {name: dp_record(part) for name, part in dp["parts"].items()}
    return out


def compose_dp(base: dict[str, Any] | None, adapter: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``dp`` entry of base model + LoRA adapter: None unless both were trained with DP.

    The adapter reads the base's training data only through the base's weights (post-processing),
    and the base never saw the adapter's data, so a patch used by one run alone keeps that run's ε;
    a patch used by both gets the sum (basic sequential composition). The sum is the entry's ε and δ,
    with both parts listed.
    """
    if not base or not adapter:
        return None
    noises = {dp_noise_of(base), dp_noise_of(adapter)}
    return {
        "epsilon": float(base["epsilon"]) + float(adapter["epsilon"]),
        "delta": float(base["delta"]) + float(adapter["delta"]),
        "noise": "csprng" if noises == {"csprng"} else "seeded",
        "composition": "basic",
        "parts": {"base": dict(base), "adapter": dict(adapter)},
    }


def dp_statement(dp: dict[str, Any] | None, parts: dict[str, Any] | None = None) -> str:
    """One sentence on what a ``dp`` entry guarantees, the same in every card: "(ε, δ)-DP" only for
    csprng noise; seeded noise is "an experiment, no formal guarantee"; ``parts`` (base/adapter
    entries) name the part without DP when the composition is None."""
    if not dp:
        if parts and any(parts.values()):
            listed = "; ".join(
                f"{name}: " + (f"ε = {float(p['epsilon']):.4g}" if p else "no DP") for name, p in parts.items()
            )
            return ("not trained with differential privacy end to end (" + listed + "): the data of the part "
                    "without DP has no guarantee, so the whole carries none")
        return "not trained with differential privacy"
    eps = f"ε = {float(dp['epsilon']):.4g}, δ = {float(dp['delta']):.3g}"
    if dp_noise_of(dp) == "seeded":
        return (f"trained with seeded DP noise: an experiment, no formal guarantee ({eps} would hold only if the "
                "noise were unpredictable)")
    if isinstance(dp.get("parts"), dict):
        listed = ", ".join(f"{name} ε = {float(p['epsilon']):.4g}" for name, p in dp["parts"].items())
        return f"(ε, δ)-DP with {eps} per training patch (basic composition of {listed})"
    return f"(ε, δ)-DP with {eps} per training patch ({dp.get('accountant', '?')} accountant)"


def recompute_epsilon(dp: dict[str, Any]) -> float:
    """ε of a card's ``dp`` entry recomputed by a fresh opacus accountant from its noise multiplier
    σ, sample rate q, steps and δ (constant σ and q over all steps, as medsynth trains).

    Raises:
        PrivacyError: a field is missing or out of range, or the accountant is unknown.
    """
    from opacus.accountants import create_accountant

    need = ("noise_multiplier", "sample_rate", "steps", "delta", "accountant")
    missing = [k for k in need if dp.get(k) is None]
    if missing:
        raise PrivacyError(f"the DP record lacks {', '.join(missing)}: its ε cannot be recomputed")
    try:
        sigma, q, steps, delta = (float(dp["noise_multiplier"]), float(dp["sample_rate"]), int(dp["steps"]),
                                  float(dp["delta"]))
    except (TypeError, ValueError) as e:
        raise PrivacyError(f"the DP record holds a non-numeric value ({e})") from e
    if not (sigma > 0 and 0 < q <= 1 and steps >= 0 and 0 < delta < 1):
        raise PrivacyError(f"the DP record is out of range (σ={sigma}, q={q}, steps={steps}, δ={delta})")
    try:
        accountant = create_accountant(str(dp["accountant"]))
    except ValueError as e:
        raise PrivacyError(f"unknown accountant {dp['accountant']!r} ({e})") from e
    if steps == 0:
        return 0.0
    accountant.history = [(sigma, q, steps)]
    return float(accountant.get_epsilon(delta=delta))


def check_poisson_compatible(loader: DataLoader) -> None:
    """Refuse a loader whose sampling breaks the accountant's Poisson-sampling assumption.

    Accepted: opacus' ``DPDataLoader`` (already Poisson) and a plain ``DataLoader`` with the default
    random or sequential sampler and the default batch sampler (opacus replaces it by Poisson
    sampling). Everything else (``WeightedRandomSampler``, a custom sampler or batch sampler, an
    iterable dataset) raises :class:`PrivacyError`.
    """
    from opacus.data_loader import DPDataLoader
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from torch.utils.data import IterableDataset, RandomSampler, SequentialSampler
    from torch.utils.data.sampler import BatchSampler

    if isinstance(loader, DPDataLoader) or isinstance(loader.batch_sampler, UniformWithReplacementSampler):
        return
    if isinstance(loader.dataset, IterableDataset):
        raise PrivacyError("DP training needs a map-style dataset; an IterableDataset cannot be Poisson-sampled")
    if type(loader.batch_sampler) is not BatchSampler or type(loader.sampler) not in (
        RandomSampler,
        SequentialSampler,
    ):
        raise PrivacyError(
            f"the data loader uses {type(loader.sampler).__name__}/{type(loader.batch_sampler).__name__}; "
            "DP accounting assumes Poisson sampling, so only a plain DataLoader (shuffle or not) is accepted"
        )


def validate_module(module: torch.nn.Module) -> None:
    """Run opacus' ``ModuleValidator.validate``; raise PrivacyError listing what it refuses."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise PrivacyError("the model cannot be trained with DP-SGD: " + "; ".join(str(e) for e in errors))


@dataclass
class PrivateTraining:
    """What :func:`make_private` returns: the wrapped parts plus the DP facts to record."""

    engine: Any
    module: torch.nn.Module
    optimizer: Any
    loader: Any
    noise_multiplier: float
    sample_rate: float
    steps: int
    settings: DPSettings
    secure_mode: bool = False

    def epsilon(self) -> float:
        """The ε spent so far (at the target δ), from the accountant."""
        if len(self.engine.accountant) == 0:
            return 0.0
        return float(self.engine.accountant.get_epsilon(delta=self.settings.target_delta))

    def card(self, steps_done: int) -> dict[str, Any]:
        """The ``dp`` entry of a model card / checkpoint: what recomputing ε needs and where the noise
        came from; never a seed or a generator state."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.settings.target_delta,
            "target_epsilon": self.settings.target_epsilon,
            "max_grad_norm": self.settings.max_grad_norm,
            "noise_multiplier": self.noise_multiplier,
            "accountant": self.settings.accountant,
            "steps": int(steps_done),
            "planned_steps": self.steps,
            "sample_rate": self.sample_rate,
            "noise": self.settings.noise,
            "secure_mode": self.secure_mode,
            "poisson_sampling": True,
        }


def make_private(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    settings: DPSettings,
    steps: int,
    noise_generator: torch.Generator | None = None,
) -> PrivateTraining:
    """Make a training run differentially private for ``steps`` optimizer steps.

    Args:
        module: the model (trainable parameters only get per-sample gradients; a LoRA-wrapped
            model therefore trains only its adapter privately).
        optimizer: over the trainable parameters.
        loader: a plain DataLoader (see :func:`check_poisson_compatible`); sample rate = 1 / len(loader).
        settings: the DP settings.
        steps: planned optimizer steps (the noise multiplier is chosen so ε reaches the target then).
        noise_generator: generator of the DP noise, on the parameters' device (checkpointed for exact
            resume; see :func:`dp_generators`); not used in secure mode.

    Raises:
        PrivacyError: a non-Poisson loader, a module opacus cannot handle, secure mode without
            torchcsprng, or a target unreachable in ``steps``.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier

    check_poisson_compatible(loader)
    validate_module(module)
    secure = settings.use_secure_mode()
    if secure:
        noise_generator = None  # opacus' secure RNG draws the noise and the Poisson sampling
    elif settings.noise == "seeded":
        warnings.warn(
            "DP training with seeded noise: anyone who knows training.seed can replay the noise, so the "
            "(ε, δ) recorded certifies nothing; an experiment, not a release.",
            UserWarning,
            stacklevel=2,
        )
    try:
        with warnings.catch_warnings():
            # opacus warns whenever its secure RNG is off; csprng noise is unpredictable all the same,
            # and seeded noise has our own warning above.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant=settings.accountant, secure_mode=secure)
    except ImportError as e:
        raise PrivacyError(f"secure_mode needs the torchcsprng package ({e})") from e
    sample_rate = 1.0 / len(loader)  # opacus' Poisson sampling keeps the expected batch size
    try:
        noise_multiplier = get_noise_multiplier(
            target_epsilon=settings.target_epsilon,
            target_delta=settings.target_delta,
            sample_rate=sample_rate,
            steps=int(steps),
            accountant=engine.accountant.mechanism(),
        )
    except ValueError as e:
        raise PrivacyError(
            f"cannot reach ε={settings.target_epsilon}, δ={settings.target_delta} in {steps} steps ({e})"
        ) from e
    try:
        wrapped, dp_optimizer, dp_loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=settings.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=settings.grad_sample_mode,
            noise_generator=noise_generator,
        )
    except ValueError as e:
        raise PrivacyError(f"opacus cannot make this run private ({e})") from e
    return PrivateTraining(
        engine=engine,
        module=wrapped,
        optimizer=dp_optimizer,
        loader=dp_loader,
        noise_multiplier=float(dp_optimizer.noise_multiplier),
        sample_rate=float(sample_rate),
        steps=int(steps),
        settings=settings,
        secure_mode=secure,
    )
