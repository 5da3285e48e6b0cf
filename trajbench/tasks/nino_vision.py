"""NiNo's vision tasks (FM-16, C10-16, FM-32, C10-32, C100-32) on the user's own data.

Knyazev et al., "Accelerating Training with Neuron Interaction and Nowcasting Networks"
(ICLR 2025; github.com/SamsungSAILMontreal/nino, MIT). Each fact below was read in that
repository at commit 84fb0cf (``utils/vision.py``, ``train_vision.py``):

================  ========  ============  ========  =====  ===============
trajbench         NiNo      data          channels  lr     target accuracy
================  ========  ============  ========  =====  ===============
``nino-fm-16``    FM-16     FashionMNIST  16-32-32  0.006  89.5 %
``nino-c10-16``   C10-16    CIFAR-10      16-32-32  0.003  66.0 %
``nino-fm-32``    FM-32     FashionMNIST  32-64-64  0.006  90.5 %
``nino-c10-32``   C10-32    CIFAR-10      32-64-64  0.003  72.5 %
``nino-c100-32``  C100-32   CIFAR-100     32-64-64  0.003  39.0 %
================  ========  ============  ========  =====  ===============

The network (NiNo's ``Net`` with its defaults): three 3x3 convolutions with bias and ReLU,
the first with stride 2 and no padding, the others stride 1 with ``same`` padding; then
global average pooling and one linear layer. The parameter names (``fc.0``, ``fc.2``,
``fc.4``, ``fc.8``) are NiNo's, so a recorded state loads into their ``Net`` unchanged.
Inputs are normalised as NiNo's torchvision transform does (``ToTensor`` then ``Normalize``
with their means and standard deviations), inside the model, so the data stays uint8.
Training: AdamW with weight decay 0 at the learning rate above, batch size 128, up to
10,000 steps (``train_vision.py`` defaults); ``recipe`` says so. The accuracy target is
on the official test set, which is this task's held-out split (``val_acc`` x 100).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from trajbench.errors import TrajbenchError
from trajbench.tasks.base import Task, register_task
from trajbench.tasks.datasets import Split
from trajbench.tasks.vision_data import check_vision_files, vision_split

__all__ = [
    "NinoConvNet",
    "NinoVisionTask",
    "NinoFM16",
    "NinoC10x16",
    "NinoFM32",
    "NinoC10x32",
    "NinoC100x32",
]

# NiNo's utils/vision.py: mnist_norm and cifar_norm.
_MNIST_NORM = ((0.1307,), (0.3081,))
_CIFAR_NORM = ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768))


class NinoConvNet(nn.Module):
    """NiNo's ``Net`` (conv, GAP, linear) taking uint8 images (n, c, h, w).

    ``hid`` are the three convolutions' output channels. ``mean`` and ``std`` are per
    input channel, applied after scaling to [0, 1]; they are plain attributes, not
    buffers, so the state dict holds exactly NiNo's parameters.
    """

    def __init__(
        self,
        hid: tuple[int, int, int],
        in_channels: int,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.mean = tuple(mean)
        self.std = tuple(std)
        c1, c2, c3 = hid
        self.fc = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, stride=2, padding=0),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=1, padding="same"),
            nn.ReLU(),
            nn.Conv2d(c2, c3, 3, stride=1, padding="same"),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c3, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return self.fc((x - mean) / std)


class NinoVisionTask(Task):
    """Base of NiNo's vision tasks: set the class attributes below in a subclass."""

    dataset: ClassVar[str] = ""
    in_channels: ClassVar[int] = 1
    num_classes: ClassVar[int] = 10
    hid: ClassVar[tuple[int, int, int]] = (16, 32, 32)
    norm: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]] = _MNIST_NORM
    nino_name: ClassVar[str] = ""
    #: NiNo's learning rate for AdamW (weight decay 0).
    learning_rate: ClassVar[float] = 0.006
    #: NiNo's target: held-out (test) accuracy in percent.
    target_acc: ClassVar[float] = 0.0
    batch_size: ClassVar[int] = 128
    max_train_steps: ClassVar[int] = 10_000
    architecture = "nino-cnn-c{c1}-c{c2}-c{c3}-gap-fc{classes}"
    default_params: ClassVar[dict[str, Any]] = {"data_dir": ""}
    val_acc_meaning = (
        "classification accuracy on the official test set (NiNo's target is on it, in %)"
    )

    def load_split(self) -> Split:
        return vision_split(self.dataset, self.params["data_dir"] or None)

    def check_data(self) -> None:
        """Locate the data files without reading them (``trajbench generate`` calls this
        before any work): a one-line error naming the folder and how to get the files."""
        check_vision_files(self.dataset, self.params["data_dir"] or None)

    def eval_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float, int]:
        # Held-out batches live on the CPU; follow the model (``generate --device cuda``).
        device = next(model.parameters()).device
        return super().eval_batch(model, x.to(device), y.to(device))

    def make_model(self) -> nn.Module:
        mean, std = self.norm
        return NinoConvNet(self.hid, self.in_channels, self.num_classes, mean, std)

    @property
    def architecture_id(self) -> str:
        c1, c2, c3 = self.hid
        return self.architecture.format(c1=c1, c2=c2, c3=c3, classes=self.num_classes)

    @property
    def recipe(self) -> dict[str, Any]:
        """NiNo's training recipe: optimizer config (for ``build_optimizer``), batch size,
        step budget and target."""
        return {
            "optimizer": {"name": "adamw", "lr": self.learning_rate, "weight_decay": 0.0},
            "batch_size": self.batch_size,
            "max_train_steps": self.max_train_steps,
            "target_val_acc": self.target_acc / 100.0,
            "nino_task": self.nino_name,
            "source": "github.com/SamsungSAILMontreal/nino@84fb0cf utils/vision.py, train_vision.py",
        }

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW at NiNo's learning rate, weight decay 0 (``train_vision.py``'s ``--wd 0``)."""
        return torch.optim.AdamW(model.parameters(), lr=self.learning_rate, weight_decay=0.0)

    def reached_target(self, metrics: dict[str, float]) -> bool:
        """Whether ``evaluate``'s ``val_acc`` reaches NiNo's accuracy target."""
        if "val_acc" not in metrics:
            raise TrajbenchError(f"metrics must hold 'val_acc', but got keys {sorted(metrics)}")
        return metrics["val_acc"] * 100.0 >= self.target_acc

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["recipe"] = self.recipe
        return info


@register_task
class NinoFM16(NinoVisionTask):
    name = "nino-fm-16"
    description = "NiNo's FM-16: 3-conv GAP CNN (16-32-32) on the user's FashionMNIST IDX files."
    dataset = "fashion_mnist"
    nino_name = "FM-16"
    target_acc = 89.5


@register_task
class NinoC10x16(NinoVisionTask):
    name = "nino-c10-16"
    description = "NiNo's C10-16: 3-conv GAP CNN (16-32-32) on the user's CIFAR-10 binary files."
    dataset = "cifar10"
    nino_name = "C10-16"
    in_channels = 3
    norm = _CIFAR_NORM
    learning_rate = 0.003
    target_acc = 66.0


@register_task
class NinoFM32(NinoVisionTask):
    name = "nino-fm-32"
    description = "NiNo's FM-32: 3-conv GAP CNN (32-64-64) on the user's FashionMNIST IDX files."
    dataset = "fashion_mnist"
    nino_name = "FM-32"
    hid = (32, 64, 64)
    target_acc = 90.5


@register_task
class NinoC10x32(NinoVisionTask):
    name = "nino-c10-32"
    description = "NiNo's C10-32: 3-conv GAP CNN (32-64-64) on the user's CIFAR-10 binary files."
    dataset = "cifar10"
    nino_name = "C10-32"
    hid = (32, 64, 64)
    in_channels = 3
    norm = _CIFAR_NORM
    learning_rate = 0.003
    target_acc = 72.5


@register_task
class NinoC100x32(NinoVisionTask):
    name = "nino-c100-32"
    description = "NiNo's C100-32: 3-conv GAP CNN (32-64-64) on the user's CIFAR-100 binary files."
    dataset = "cifar100"
    nino_name = "C100-32"
    hid = (32, 64, 64)
    in_channels = 3
    num_classes = 100
    norm = _CIFAR_NORM
    learning_rate = 0.003
    target_acc = 39.0
