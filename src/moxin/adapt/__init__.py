"""Continued pretraining of an imported open model on the user's documents (`[adapt]`, `moxin adapt`)."""
