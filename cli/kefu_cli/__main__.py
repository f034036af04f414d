"""`python -m kefu_cli` = `kefu`."""

import sys

from kefu_cli.main import main

sys.exit(main())
