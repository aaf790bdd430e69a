"""``python -m blobgate``: the same as the ``blobgate`` console script."""

from blobgate.cli import main

raise SystemExit(main())
