"""`python -m ganmatch`: the `ganmatch` console script."""

import sys

from ganmatch.cli import main

sys.exit(main())
