"""`moxin compare A B`: what differs between two models, what it did to their numbers and what they say."""

from moxin.compare.run import compare

__all__ = ["compare"]
