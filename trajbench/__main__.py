"""``python -m trajbench``: the same as the ``trajbench`` console script."""

from trajbench.cli import main

raise SystemExit(main())
