"""Bring your own trajectories: import checkpoint directories and arrays into a store.

* :func:`import_checkpoints`: a directory of state-dict checkpoints (``torch.save``,
  safetensors, Hugging Face ``checkpoint-<step>/`` folders) becomes one run
  (``docs/import-checkpoints.md``);
* :func:`import_array`: ``.npy`` / ``.npz`` trajectory arrays become runs or synthetic
  series (``docs/import-arrays.md``).

Both return an :class:`ImportResult`; the ``trajbench import`` command wraps them
(:mod:`trajbench.importers.cli`).
"""

from __future__ import annotations

from trajbench.importers._common import ArrayImportError, CheckpointImportError, ImportResult
from trajbench.importers.arrays import import_array
from trajbench.importers.checkpoints import import_checkpoints

__all__ = [
    "import_checkpoints",
    "import_array",
    "ImportResult",
    "CheckpointImportError",
    "ArrayImportError",
]
