"""``python -m streamcount.bench``: the ``bench`` command without the rest of the CLI."""

import sys

from streamcount.cli.bench import main

sys.exit(main())
