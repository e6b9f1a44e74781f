import sys

from streamcount.cli.main import main

sys.exit(main())
