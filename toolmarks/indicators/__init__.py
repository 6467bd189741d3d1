"""The indicator library: one YAML file per tool, a strict loader and a compiler."""
