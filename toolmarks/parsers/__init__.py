"""Parsers: one module per artefact kind, each a detection core and a plaso adapter."""
