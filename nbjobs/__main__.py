"""``python -m nbjobs`` is the ``nbjobs`` command."""
import sys

from .cli import main

sys.exit(main())
