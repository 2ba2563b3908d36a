"""``python -m probes ...`` (and ``torchrun ... -m probes extract ...``): the ``probes`` command."""

import sys

from .cli import main

sys.exit(main())
