"""Domain core: plain typed functions over dataclasses. No I/O, no clock (callers pass `now`)."""
