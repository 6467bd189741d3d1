"""Importers and exporters of indicator sets, one module per format.

The YARA export (compiler.yara_source) holds the string indicators only: a
command-line indicator matches the program a command line runs and that
program's own arguments, read from an event record's field, and a YARA rule
over a file's bytes sees neither the field nor the program (event logs keep
the text as UTF-16 in binary XML templates), so it has no YARA form.
"""
