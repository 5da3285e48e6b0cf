"""The task zoo: small networks with fixed data splits, for generating and scoring trajectories.

    from trajbench.tasks import get_task, list_tasks
    task = get_task("digits-cnn")
    model = task.build(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for batch in task.train_batches(64, seed=0, epoch=0):
        task.train_step(model, batch, opt)
    task.evaluate(model)        # {"val_loss": ..., "val_acc": ...}

See ``docs/datasets.md`` for every task's data, model and metrics.
"""

from __future__ import annotations

from trajbench.tasks.base import (
    Batch,
    Task,
    describe_tasks,
    get_task,
    get_task_class,
    list_tasks,
    mix_seed,
    register_task,
    state_dict_from_row,
)
from trajbench.tasks.datasets import Split
from trajbench.tasks.zoo import (
    CharTransformerLM,
    DigitsAutoencoder,
    DigitsCNN,
    DigitsLogReg,
    DigitsMLP,
    Mnist1dCNN,
    Mnist1dMLP,
)

__all__ = [
    "Task",
    "Batch",
    "Split",
    "get_task",
    "get_task_class",
    "list_tasks",
    "describe_tasks",
    "register_task",
    "state_dict_from_row",
    "mix_seed",
    "DigitsLogReg",
    "DigitsMLP",
    "DigitsCNN",
    "DigitsAutoencoder",
    "Mnist1dMLP",
    "Mnist1dCNN",
    "CharTransformerLM",
]
