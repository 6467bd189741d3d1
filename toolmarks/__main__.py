"""Runs the toolmarks command line: python -m toolmarks."""

import sys

from toolmarks.cli.main import main

sys.exit(main())
