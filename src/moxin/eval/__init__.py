"""Evaluation: the lm-eval model adapter (`adapter`), task YAMLs for local data (`tasks/`, `local_data`), the task
catalogue and suites (`catalog`), runs over checkpoints with cached results (`runner`, `identity`), and the
checkpoint table and plots (`report`). Importing this package is light; lm-eval and torch load on use."""
