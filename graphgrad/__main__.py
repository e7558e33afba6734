"""`python -m graphgrad ...` runs the same command line as the `graphgrad` command."""
import sys

from .cli import main

sys.exit(main())
