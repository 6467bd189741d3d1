"""Importers and exporters of indicator sets, one module per format."""
