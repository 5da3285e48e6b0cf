"""Record trajectories from training frameworks with a callback (``docs/integrations.md``).

* :mod:`trajbench.integrations.lightning`: ``TrajectoryCallback`` for PyTorch Lightning
  (extra ``trajbench[lightning]``);
* :mod:`trajbench.integrations.transformers`: ``TrajectoryCallback`` for the Hugging Face
  ``Trainer`` (extra ``trajbench[transformers]``).

Both wrap :class:`trajbench.Recorder`. The frameworks are imported only when one of these
modules is; a missing one raises :class:`trajbench._optional.MissingDependencyError` (a
:class:`~trajbench.errors.TrajbenchError` and an :class:`ImportError`) naming the extra.
"""

from __future__ import annotations

from trajbench._optional import MissingDependencyError

__all__ = ["MissingDependencyError"]
