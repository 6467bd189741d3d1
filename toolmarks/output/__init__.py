"""Outputs: plaso storage, JSONL and CSV timelines, the scan summary."""
