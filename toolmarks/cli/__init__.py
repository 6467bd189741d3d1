"""The toolmarks command line."""
