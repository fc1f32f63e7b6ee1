"""Conditional DDPM for T2w -> SFF, sampled with a hand-driven DDIM loop.

The denoiser is MONAI's ``DiffusionModelUNet`` and the noise schedule / forward noising come from MONAI's
``DDPMScheduler`` (the field's standard, so checkpoints and training recipes stay comparable). The condition is
the normalised T2w slice, concatenated on channels with the noisy target; the target is SFF mapped to [-1, 1].

Sampling does NOT use MONAI's ``DDIMScheduler``: its ``set_timesteps(n)`` spaces timesteps by linspace
(999, 979, 958, ...) while ``step()`` assumes the previous timestep is ``t - T // n``, so 19 of 49 transitions
for n = 50 jump to a noise level the sample is not at (monai 1.6.1, see DESIGN.md). :func:`ddim_sample_loop`
instead walks an explicit list of (t, t_next) pairs built by :func:`ddim_transitions`, reading both alphas from
the scheduler's ``alphas_cumprod`` table, so the maths is visible and tested.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from .unet import crop_to, pad_to_multiple

__all__ = ["ConditionalDDPM", "DDPMConfig", "ddim_sample_loop", "ddim_timesteps", "ddim_transitions"]

_SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")
_PREDICTION_TYPES = ("epsilon", "v_prediction")

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
Progress = Callable[[int, int], None]


@dataclass
class DDPMConfig:
    """Explicit, JSON-serialisable DDPM configuration (saved inside every checkpoint).

    Defaults and why:

    * ``beta_schedule="linear_beta"`` (1e-4 -> 0.02, Ho et al.): this is an image-space model, and the linear
      schedule leaves alpha_cumprod(T-1) ~= 4e-5, i.e. x_{T-1} is pure noise as sampling assumes. The
      latent-diffusion "scaled_linear_beta" keeps ~7e-4 of signal at T-1 (a train/sample mismatch for one-step
      sampling). "cosine" is supported too (pair it with v-prediction: its alpha_cumprod(T-1) ~= 2e-9).
    * ``prediction_type="v_prediction"``: x0 = sqrt(a) x_t - sqrt(1 - a) v is well conditioned at every t, so
      one-step "regression sampling" from t = T-1 works; with epsilon-prediction x0 = (x_t - sqrt(1-a) eps) /
      sqrt(a) amplifies any error by 1 / sqrt(a) ~= 160 at t = T-1. "epsilon" is still supported.
    """

    channels: tuple[int, ...] = (32, 64, 128)  # multiples of norm_num_groups
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 16
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear_beta"
    beta_start: float = 1e-4  # ignored by "cosine"
    beta_end: float = 0.02  # ignored by "cosine"
    prediction_type: str = "v_prediction"

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; normalise so configs compare equal.
        self.channels = tuple(int(c) for c in self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if not self.channels:
            raise ValueError("DDPMConfig.channels must not be empty")
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("DDPMConfig.attention_levels must have one entry per entry of channels")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(
                f"DDPMConfig.channels {self.channels} must be multiples of norm_num_groups={self.norm_num_groups}"
            )
        for c, att in zip(self.channels, self.attention_levels, strict=True):
            if att and c % self.num_head_channels:
                raise ValueError(
                    f"attention level with {c} channels is not a multiple of num_head_channels={self.num_head_channels}"
                )
        if self.num_train_timesteps < 1:
            raise ValueError("DDPMConfig.num_train_timesteps must be >= 1")
        if self.beta_schedule not in _SCHEDULES:
            raise ValueError(
                f"DDPMConfig.beta_schedule must be one of {_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.prediction_type not in _PREDICTION_TYPES:
            raise ValueError(
                f"DDPMConfig.prediction_type must be one of {_PREDICTION_TYPES}, got {self.prediction_type!r}"
            )


def ddim_timesteps(num_train_timesteps: int, steps: int) -> torch.Tensor:
    """Descending, evenly spaced ("linspace") timesteps from T-1 to 0, both included; ``steps=1`` gives [T-1].

    Starting at T-1 matters for few steps: diffusers' "leading" spacing never visits the pure-noise end.
    For ``steps <= T`` the rounded values are distinct because their spacing is >= 1.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    if steps == 1:
        return torch.tensor([num_train_timesteps - 1])
    return torch.linspace(num_train_timesteps - 1, 0, steps, dtype=torch.float64).round().long()


def ddim_transitions(num_train_timesteps: int, steps: int) -> list[tuple[int, int]]:
    """The (t, t_next) pairs the DDIM loop takes; t_next is the real next timestep, -1 = clean (alpha = 1)."""
    ts = ddim_timesteps(num_train_timesteps, steps).tolist()
    return list(zip(ts, ts[1:] + [-1], strict=True))


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (so a CPU generator also seeds GPU runs)."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def ddim_sample_loop(
    denoise: Denoiser,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    steps: int,
    eta: float = 0.0,
    prediction_type: str = "v_prediction",
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run DDIM (Song et al. 2021, eq. 12) from ``x`` ~ N(0, I) at t = T-1 and return x0 clipped to [-1, 1].

    ``denoise(x_t, t)`` returns the network output (epsilon or v) for integer timestep ``t``. Each step goes
    from t to the real next timestep of :func:`ddim_transitions`; the last lands on alpha_cumprod = 1, so the
    final x is the clipped x0 prediction. The noise estimate is recomputed from the clipped x0 (diffusers'
    ``use_clipped_model_output``) so the pair stays consistent with x_t. ``progress(i, steps)`` is called with
    the 1-based count of finished steps.
    """
    if prediction_type not in _PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {_PREDICTION_TYPES}, got {prediction_type!r}")
    ac = alphas_cumprod.double().tolist()  # python floats: float64 coefficients on any device
    transitions = ddim_transitions(len(ac), steps)
    for i, (t, t_next) in enumerate(transitions):
        a_t = ac[t]
        a_next = ac[t_next] if t_next >= 0 else 1.0
        out = denoise(x, t)
        if prediction_type == "epsilon":
            x0 = (x - math.sqrt(1.0 - a_t) * out) / math.sqrt(a_t)
        else:
            x0 = math.sqrt(a_t) * x - math.sqrt(1.0 - a_t) * out
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        sigma = eta * math.sqrt((1.0 - a_next) / (1.0 - a_t) * (1.0 - a_t / a_next))
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1.0 - a_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn(tuple(x.shape), generator, x)
        if progress is not None:
            progress(i + 1, len(transitions))
    return x


class ConditionalDDPM(nn.Module):
    """Conditional DDPM: MONAI ``DiffusionModelUNet`` on concat([noisy SFF, T2w]) + ``DDPMScheduler`` table.

    ``forward`` returns the training loss (same as :meth:`training_loss`) so ``DistributedDataParallel``, which
    syncs gradients through ``forward``, can wrap the model as is. Use :meth:`sample` for inference. The
    scheduler holds no parameters or buffers: it is rebuilt from the config, not stored in the state dict.
    """

    arch = "ddpm"

    def __init__(self, config: DDPMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DDPMConfig()
        self.network = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=2,
            out_channels=1,
            channels=config.channels,
            attention_levels=config.attention_levels,
            num_res_blocks=config.num_res_blocks,
            num_head_channels=config.num_head_channels,
            norm_num_groups=config.norm_num_groups,
        )
        schedule_args = (
            {}
            if config.beta_schedule == "cosine"
            else {"beta_start": config.beta_start, "beta_end": config.beta_end}
        )
        # On the CPU whatever the default device: the cosine schedule calls .item(), which fails on the meta device
        # that checkpoint loading builds models on to check shapes (the table holds no parameters either way).
        with torch.device("cpu"):
            self.scheduler = DDPMScheduler(
                num_train_timesteps=config.num_train_timesteps,
                schedule=config.beta_schedule,
                prediction_type=config.prediction_type,
                **schedule_args,
            )

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the bare network accepts without padding (one halving per level but the last)."""
        return 2 ** (len(self.config.channels) - 1)

    def forward(
        self, t2w: torch.Tensor, sff: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.training_loss(t2w, sff, generator=generator)

    def training_loss(
        self, t2w: torch.Tensor, sff: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Standard DDPM objective: MSE between the network output and the noise (or v) at a uniform random t.

        ``t2w`` and ``sff`` are (B, 1, H, W); ``sff`` in [0, 1] is mapped to [-1, 1]. Padding needed for odd
        sizes is excluded from the loss.
        """
        _check_bchw(t2w, "t2w")
        x0 = sff.clamp(0.0, 1.0) * 2.0 - 1.0
        cond, size = pad_to_multiple(t2w, self.size_multiple)
        x0, _ = pad_to_multiple(x0, self.size_multiple)
        b = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(
            0, self.config.num_train_timesteps, (b,), generator=generator, device=gen_device
        ).to(x0.device)
        noise = _randn(tuple(x0.shape), generator, x0)
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = (
            noise if self.config.prediction_type == "epsilon" else self.scheduler.get_velocity(x0, noise, t)
        )
        pred = self.network(torch.cat([noisy, cond], dim=1), t)
        return F.mse_loss(crop_to(pred, size), crop_to(target, size))

    @torch.inference_mode()
    def sample(
        self,
        t2w: torch.Tensor,
        *,
        steps: int = 50,
        eta: float = 0.0,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
        samples_per_pass: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM-sample SFF maps for a batch of normalised T2w slices (B, 1, H, W).

        Returns (mean, std) over ``n_samples``, each (B, 1, H, W) in SFF units, samples clipped to [0, 1];
        std is the sample standard deviation (zeros when ``n_samples == 1``). The samples run together along
        the batch dimension (condition repeated), ``samples_per_pass`` at a time (default: all) so callers can
        trade speed for memory. ``progress(done, total)`` is called after every DDIM step, total being
        ``steps`` times the number of passes; raising inside it cancels sampling. Deterministic given
        ``generator``.
        """
        _check_bchw(t2w, "t2w")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        per_pass = n_samples if samples_per_pass is None else max(1, min(samples_per_pass, n_samples))
        cond, size = pad_to_multiple(t2w, self.size_multiple)
        b = cond.shape[0]
        chunks = [min(per_pass, n_samples - s) for s in range(0, n_samples, per_pass)]
        ac = self.scheduler.alphas_cumprod
        samples = []
        for j, k in enumerate(chunks):
            c = cond.repeat(k, 1, 1, 1)

            def denoise(x: torch.Tensor, t: int, c: torch.Tensor = c) -> torch.Tensor:
                timesteps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
                return self.network(torch.cat([x, c], dim=1), timesteps)

            def report(done: int, total: int, offset: int = j * steps) -> None:
                if progress is not None:
                    progress(offset + done, steps * len(chunks))

            x = _randn(tuple(c.shape), generator, c)
            x0 = ddim_sample_loop(
                denoise,
                x,
                ac,
                steps=steps,
                eta=eta,
                prediction_type=self.config.prediction_type,
                generator=generator,
                progress=report,
            )
            samples.append(x0.reshape(k, b, *x0.shape[1:]))
        sff = crop_to(((torch.cat(samples) + 1.0) / 2.0).clamp(0.0, 1.0), size)
        mean = sff.mean(dim=0)
        std = sff.std(dim=0) if n_samples > 1 else torch.zeros_like(mean)
        return mean, std


def _check_bchw(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(x.shape)}")
