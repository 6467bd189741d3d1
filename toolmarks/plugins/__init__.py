"""The plaso front: toolmarks inside log2timeline and psort, and `toolmarks tag`."""
