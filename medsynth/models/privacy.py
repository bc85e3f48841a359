"""Differential privacy for training (opacus): DP-SGD with Poisson sampling, ε accounting, and the
checks that keep the accountant's guarantee honest.

- The model is checked with ``ModuleValidator.validate`` before anything else (no BatchNorm).
- Only a plain DataLoader (random or sequential sampler) is accepted; opacus replaces its sampler
  by Poisson sampling. A loader with a custom or weighted sampler is refused with
  :class:`PrivacyError`: the RDP/PRV accountants assume Poisson sampling and such a loader would
  break the guarantee silently.
- The noise multiplier is opacus' ``get_noise_multiplier`` for the planned number of steps (given
  as steps, not rounded from epochs), passed to ``PrivacyEngine.make_private``; the ε actually
  spent is asked from the accountant and recorded in the model card and in every checkpoint (with
  the accountant's state, so a resumed run keeps counting).
- ``secure_mode`` (cryptographically secure noise, needs ``torchcsprng``) is optional; without it
  a warning says the run is fine for experiments only.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.sampler import BatchSampler

from medsynth.config import load_config
from medsynth.errors import PrivacyError


@dataclass
class DPSettings:
    """What the user asks for; the defaults are the ``dp`` section of ``configs/train.yaml``
    (:meth:`from_any`).

    Attributes:
        target_epsilon: ε to reach at the end of the planned steps.
        target_delta: δ (well below 1 / number of training patches).
        max_grad_norm: per-sample gradient clipping bound C.
        secure_mode: cryptographically secure noise (needs torchcsprng); exact resume is then impossible.
        accountant: "rdp" or "prv".
        grad_sample_mode: opacus' per-sample gradient mode. "functorch" (default) is exact on the UNet;
            "hooks" (faster) returns zero per-sample gradients for convs fed by diffusers' attention
            blocks, whose outputs are channels_last in memory (opacus 1.6; benchmarks/bench_dp.py).
    """

    target_epsilon: float
    target_delta: float
    max_grad_norm: float
    secure_mode: bool
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
        settings = cls(**base)
        if not (settings.target_epsilon > 0 and 0 < settings.target_delta < 1 and settings.max_grad_norm > 0):
            raise PrivacyError(
                f"need target_epsilon > 0, 0 < target_delta < 1 and max_grad_norm > 0, got {asdict(settings)}"
            )
        if settings.accountant not in ("rdp", "prv"):
            raise PrivacyError(f"accountant must be 'rdp' or 'prv', got {settings.accountant!r}")
        return settings


def check_poisson_compatible(loader: DataLoader) -> None:
    """Refuse a loader whose sampling breaks the accountant's Poisson-sampling assumption.

    Accepted: opacus' ``DPDataLoader`` (already Poisson) and a plain ``DataLoader`` with the default
    random or sequential sampler and the default batch sampler (opacus replaces it by Poisson
    sampling). Everything else (``WeightedRandomSampler``, a custom sampler or batch sampler, an
    iterable dataset) raises :class:`PrivacyError`.
    """
    from opacus.data_loader import DPDataLoader
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    if isinstance(loader, DPDataLoader) or isinstance(loader.batch_sampler, UniformWithReplacementSampler):
        return
    if isinstance(loader.dataset, torch.utils.data.IterableDataset):
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

    def epsilon(self) -> float:
        """The ε spent so far (at the target δ), from the accountant."""
        if len(self.engine.accountant) == 0:
            return 0.0
        return float(self.engine.accountant.get_epsilon(delta=self.settings.target_delta))

    def card(self, steps_done: int) -> dict[str, Any]:
        """The ``dp`` entry of a model card / checkpoint."""
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
            "secure_mode": self.settings.secure_mode,
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
        noise_generator: generator of the DP noise (checkpointed for exact resume); ignored in secure mode.

    Raises:
        PrivacyError: a non-Poisson loader, a module opacus cannot handle, secure mode without
            torchcsprng, or a target unreachable in ``steps``.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier

    check_poisson_compatible(loader)
    validate_module(module)
    if settings.secure_mode:
        noise_generator = None
    else:
        warnings.warn(
            "DP training without secure_mode: the noise comes from a seeded pseudo-random generator, "
            "fine for experiments and exact resume, not for a formal guarantee in production.",
            UserWarning,
            stacklevel=2,
        )
    try:
        with warnings.catch_warnings():
            # Our own warning above says the same, in our terms.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant=settings.accountant, secure_mode=settings.secure_mode)
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
    )
