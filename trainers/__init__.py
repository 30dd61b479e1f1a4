"""Command-line trainers: `python -m trainers.finetune`, `python -m trainers.evaluate` (see docs/trainers.md)."""
