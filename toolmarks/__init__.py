"""toolmarks: marks of attacker tools on disk images, as a tagged plaso timeline."""

__version__ = "0.1.0"
