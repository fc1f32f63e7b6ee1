"""Learning-rate schedules (warm-up + cosine, over steps or over training seconds) and the EMA's decay."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _cosine_to_one_percent(progress: float) -> float:
    """The decay after warm-up: 1 at ``progress`` 0, 0.01 at 1 (and beyond)."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.03):
    """LR factor: linear warm-up, then cosine decay to 1 %; depends only on the step, so resuming with more
    epochs stretches the schedule instead of breaking it."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return _cosine_to_one_percent((step - warmup) / max(1, total_steps - warmup))

    return factor


def warmup_cosine_in_time(budget_s: float, seconds: Callable[[], float], warmup_fraction: float = 0.03):
    """LR factor of a run with a time budget: the same warm-up + cosine, over training seconds (``seconds()``)
    instead of steps, so every run of a wall-time comparison ends its schedule when its budget ends, however
    many steps it managed."""
    warmup = warmup_fraction * budget_s

    def factor(step: int) -> float:
        spent = seconds()
        if spent < warmup:
            return max(spent / warmup, 1e-3)
        return _cosine_to_one_percent((spent - warmup) / max(1e-9, budget_s - warmup))

    return factor


def ema_decay_fn(decay: float, warmup: bool):
    """``multi_avg_fn`` for AveragedModel: a fixed decay, or with ``warmup`` min(decay, (1 + n) / (10 + n)) after n
    updates, so that a short run's average is not mostly its random start (0.999 keeps e^-1 of the first
    weights after 1000 steps)."""
    if not warmup:
        return torch.optim.swa_utils.get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, weight)

    return update
