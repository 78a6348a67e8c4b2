"""``python -m ncauth`` is the ``ncauth`` command."""

from ncauth.cli import main

raise SystemExit(main())
