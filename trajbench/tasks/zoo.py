"""The built-in task zoo: small, CPU-quick networks on offline data.

========================  =========  ==============================================  ==========================
name                      data       model                                           tensor kinds
========================  =========  ==============================================  ==========================
``digits-logreg``         digits     multinomial logistic regression 64 -> 10        linear, bias
``digits-mlp``            digits     MLP 64 -> 32 -> 32 -> 10 (ReLU)                 linear, bias
``digits-cnn``            digits     2 x (conv3x3 + BatchNorm + ReLU), pool, linear  conv, bias, norm, buffer, linear
``digits-autoencoder``    digits     MLP autoencoder 64 -> 32 -> 8 -> 32 -> 64       linear, bias
``mnist1d-mlp``           MNIST-1D   MLP 40 -> 100 -> 100 -> 10 (ReLU)               linear, bias
``mnist1d-cnn``           MNIST-1D   3 x strided conv1d + ReLU, linear               conv, bias, linear
``charlm-transformer``    corpus     char-level transformer: token + position        embedding, norm, linear, bias
                                     embeddings, pre-LN blocks (causal attention
                                     + GELU MLP), final LayerNorm, linear head
========================  =========  ==============================================  ==========================
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from trajbench.errors import TrajbenchError
from trajbench.tasks import datasets
from trajbench.tasks.base import Batch, Task, register_task
from trajbench.tasks.datasets import Split

__all__ = [
    "DigitsLogReg",
    "DigitsMLP",
    "DigitsCNN",
    "DigitsAutoencoder",
    "Mnist1dMLP",
    "Mnist1dCNN",
    "CharTransformerLM",
    "CharTransformer",
]


def _mlp(
    sizes: list[int],
    activation: type[nn.Module] = nn.ReLU,
    final_activation: nn.Module | None = None,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    if final_activation is not None:
        layers.append(final_activation)
    return nn.Sequential(*layers)


def _positive(task: Task, *keys: str) -> None:
    for key in keys:
        value = task.params[key]
        if value < 1:
            raise TrajbenchError(
                f"task '{task.name}': parameter {key!r} must be >= 1, but got {value!r}"
            )


# ------------------------------------------------------------------ digits
class _DigitsTask(Task):
    def load_split(self) -> Split:
        return datasets.digits()


@register_task
class DigitsLogReg(_DigitsTask):
    name = "digits-logreg"
    description = "Multinomial logistic regression on scikit-learn digits (convex)."
    architecture = "logreg-64-10"

    def make_model(self) -> nn.Module:
        return nn.Linear(64, 10)


@register_task
class DigitsMLP(_DigitsTask):
    name = "digits-mlp"
    description = "Two-hidden-layer ReLU MLP on scikit-learn digits."
    architecture = "mlp-64-{hidden}-{hidden}-10"
    default_params = {"hidden": 32, "depth": 2}

    def validate_params(self) -> None:
        _positive(self, "hidden", "depth")

    def make_model(self) -> nn.Module:
        h = self.params["hidden"]
        return _mlp([64] + [h] * self.params["depth"] + [10])


class _DigitsConvNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(1, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * c)
        self.fc = nn.Linear(2 * c * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


@register_task
class DigitsCNN(_DigitsTask):
    name = "digits-cnn"
    description = "Small CNN with BatchNorm on 8x8 scikit-learn digits (records BatchNorm running statistics as buffers)."
    architecture = "cnn2d-c{channels}bn-c{channels2}bn-pool-fc"
    default_params = {"channels": 8}

    @property
    def architecture_id(self) -> str:
        c = self.params["channels"]
        return self.architecture.format(channels=c, channels2=2 * c)

    def validate_params(self) -> None:
        _positive(self, "channels")

    def make_model(self) -> nn.Module:
        return _DigitsConvNet(self.params["channels"])


@register_task
class DigitsAutoencoder(_DigitsTask):
    """MLP autoencoder on digits; the loss is the mean squared error per pixel.

    ``val_acc`` is a documented proxy: the fraction of held-out pixels reconstructed
    within ``tolerance`` (default 0.125 = two of the 16 grey levels) of the original.
    """

    name = "digits-autoencoder"
    description = "MLP autoencoder 64-32-8-32-64 on scikit-learn digits (MSE loss)."
    architecture = "ae-64-{hidden}-{bottleneck}-{hidden}-64"
    default_params = {"hidden": 32, "bottleneck": 8, "tolerance": 0.125}
    val_acc_meaning = "fraction of held-out pixels reconstructed within `tolerance` (default 0.125) of the original (a proxy; the task has no labels)"

    def validate_params(self) -> None:
        _positive(self, "hidden", "bottleneck")
        if not 0 < self.params["tolerance"] <= 1:
            raise TrajbenchError(
                f"task '{self.name}': tolerance must be in (0, 1], but got {self.params['tolerance']!r}"
            )

    def make_model(self) -> nn.Module:
        h, b = self.params["hidden"], self.params["bottleneck"]
        return nn.Sequential(
            nn.Linear(64, h),
            nn.ReLU(),
            nn.Linear(h, b),
            nn.ReLU(),
            nn.Linear(b, h),
            nn.ReLU(),
            nn.Linear(h, 64),
            nn.Sigmoid(),
        )

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, _ = batch
        return F.mse_loss(model(x), x)

    def eval_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float, int]:
        recon = model(x)
        err = recon - x
        within = float((err.abs() <= self.params["tolerance"]).sum())
        return float((err * err).sum()), within, int(x.numel())


# ---------------------------------------------------------------- MNIST-1D
class _Mnist1dTask(Task):
    def load_split(self) -> Split:
        return datasets.mnist1d()


@register_task
class Mnist1dMLP(_Mnist1dTask):
    name = "mnist1d-mlp"
    description = "Two-hidden-layer ReLU MLP on MNIST-1D (generated offline)."
    architecture = "mlp-40-{hidden}-{hidden}-10"
    default_params = {"hidden": 100}

    def validate_params(self) -> None:
        _positive(self, "hidden")

    def make_model(self) -> nn.Module:
        h = self.params["hidden"]
        return _mlp([40, h, h, 10])


class _Conv1dNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv1d(1, c, 5, stride=2, padding=2)  # 40 -> 20
        self.conv2 = nn.Conv1d(c, c, 3, stride=2, padding=1)  # 20 -> 10
        self.conv3 = nn.Conv1d(c, c, 3, stride=2, padding=1)  # 10 -> 5
        self.fc = nn.Linear(c * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], 1, -1)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.flatten(1))


@register_task
class Mnist1dCNN(_Mnist1dTask):
    name = "mnist1d-cnn"
    description = "Three strided 1-D convolutions and a linear head on MNIST-1D."
    architecture = "cnn1d-c{channels}x3-fc"
    default_params = {"channels": 16}

    def validate_params(self) -> None:
        _positive(self, "channels")

    def make_model(self) -> nn.Module:
        return _Conv1dNet(self.params["channels"])


# -------------------------------------------------------------- char LM
class _Block(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc_out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        shape = (b, t, self.n_head, d // self.n_head)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class CharTransformer(nn.Module):
    """A minimal GPT: token and position embeddings, pre-LN blocks, final LayerNorm, head."""

    def __init__(self, vocab: int, context: int, d_model: int, n_layer: int, n_head: int) -> None:
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


@register_task
class CharTransformerLM(Task):
    """Character-level transformer language model on the repository's public-domain corpus.

    ``val_loss`` is the mean next-character cross-entropy (nats) and ``val_acc`` the
    next-character accuracy, over every position of the held-out windows.
    """

    name = "charlm-transformer"
    description = "Tiny character-level transformer LM (embeddings, LayerNorm, causal attention, MLP) on public-domain text."
    architecture = "gpt-d{d_model}-l{n_layer}-h{n_head}-ctx{context}"
    default_params = {"context": 32, "d_model": 32, "n_layer": 2, "n_head": 2}
    val_acc_meaning = "next-character accuracy over every position of the held-out windows"

    def validate_params(self) -> None:
        _positive(self, "context", "d_model", "n_layer", "n_head")
        if self.params["d_model"] % self.params["n_head"]:
            raise TrajbenchError(
                f"task '{self.name}': d_model ({self.params['d_model']}) must be divisible by n_head ({self.params['n_head']})"
            )

    def load_split(self) -> Split:
        return datasets.text_windows(self.params["context"])[0]

    @property
    def vocab(self) -> str:
        """The characters of the corpus, sorted; token ``i`` is ``vocab[i]``."""
        return datasets.text_windows(self.params["context"])[1]

    def make_model(self) -> nn.Module:
        p = self.params
        return CharTransformer(
            len(self.vocab), p["context"], p["d_model"], p["n_layer"], p["n_head"]
        )

    def info(self) -> dict:
        info = super().info()
        info["vocab_size"] = len(self.vocab)
        return info
