"""``python -m pretriever`` is the same as the ``pretriever`` command."""

from pretriever.cli import main

raise SystemExit(main())
