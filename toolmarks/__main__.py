"""Runs the toolmarks command line: python -m toolmarks."""

from toolmarks.cli.main import run

run()
