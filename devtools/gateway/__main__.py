"""``python -m devtools.gateway ...``: see :mod:`devtools.gateway.cli`."""

import sys

from devtools.gateway.cli import main

sys.exit(main())
