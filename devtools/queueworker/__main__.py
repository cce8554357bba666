import sys

from devtools.queueworker.cli import main

sys.exit(main())
