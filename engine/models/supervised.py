"""Supervised tasks: a seeded train/validation split, a tanh network and its likelihood.

The kfac topic trains these and the K-FAC study (engine/bench/kfac_study.py) benchmarks
them, so both build the same data and the same initial weights from a seed.

  digits_autoencoder  scikit-learn's bundled ``digits`` (1797 8x8 images, pixels scaled
                      to [0, 1]); a deep autoencoder 64-w1-…-wk-…-w1-64 (``widths`` is the
                      encoder, mirrored), tanh hidden units, sigmoid output with binary
                      cross-entropy averaged over the 64 pixels (its floor on digits is the
                      pixels' own entropy, about 0.2134, since pixels are not binary).
  digits_mlp          the same images, 10 classes, an MLP 64-widths-10 (tanh), softmax
                      cross-entropy.
  teacher_student     x ~ N(0, I_16); a fixed random tanh teacher 16-32-4 plus noise of
                      s.d. 0.1 gives y; the student 16-widths-4 fits it by ½ squared error
                      averaged over the 4 outputs (a unit-variance Gaussian likelihood).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..optim.likelihoods import get_likelihood
from ..params import ParamError

TASKS = ("digits_autoencoder", "digits_mlp", "teacher_student")
WIDTHS = (128, 64, 16)        # the default hidden widths (the autoencoder mirrors them)
LIKELIHOOD = {"digits_autoencoder": "bernoulli", "digits_mlp": "categorical",
              "teacher_student": "gaussian"}


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_data(task: str, seed: int, device: torch.device, val_fraction: float = 0.2) -> Data:
    """The task's train/validation split, seeded, as tensors on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    if task in ("digits_autoencoder", "digits_mlp"):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        y = x if task == "digits_autoencoder" else labels
    elif task == "teacher_student":
        n = 5120
        x = torch.randn(n, 16, generator=gen)
        teacher = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
        with torch.no_grad():
            for m in teacher:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 1.5 / math.sqrt(m.in_features))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            y = teacher(x) + 0.1 * torch.randn(n, 4, generator=gen)
    else:
        raise ParamError(f"task must be one of {'|'.join(TASKS)}, got {task!r}")
    perm = torch.randperm(x.shape[0], generator=gen)
    n_val = int(round(val_fraction * x.shape[0]))
    val, train = perm[:n_val], perm[n_val:]
    return Data(x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device))


def layer_sizes(task: str, widths: Sequence[int]) -> list[int]:
    """Input, hidden and output widths of the task's network."""
    if task == "digits_autoencoder":
        return [64, *widths, *reversed(widths[:-1]), 64]
    if task == "digits_mlp":
        return [64, *widths, 10]
    return [16, *widths, 4]


def parameter_count(task: str, widths: Sequence[int]) -> int:
    """Weights and biases of the task's network."""
    sizes = layer_sizes(task, widths)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def build_model(task: str, widths: Sequence[int], seed: int, device: torch.device) -> nn.Sequential:
    """The task's network, initialised from ``seed`` (PyTorch's default Linear init)."""
    sizes = layer_sizes(task, widths)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    torch.random.set_rng_state(gen_state)
    return nn.Sequential(*layers).to(device)


@torch.no_grad()
def evaluate(model: nn.Module, likelihood: str, data: Data) -> tuple[float, float | None]:
    """(validation loss, validation accuracy or None when the likelihood has no classes)."""
    lik = get_likelihood(likelihood)
    out = model(data.x_val)
    return float(lik.mean_loss(out, data.y_val)), lik.accuracy(out, data.y_val)
