"""``python -m devtools.pgcluster ...``: see :mod:`devtools.pgcluster.cli`."""

import sys

from devtools.pgcluster.cli import main

sys.exit(main())
