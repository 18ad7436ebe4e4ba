"""``python -m futurefill.cli``: the ``futurefill`` command."""

from . import main

raise SystemExit(main())
