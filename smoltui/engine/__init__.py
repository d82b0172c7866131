"""The engine: models, tokenizers, data, runs. Never imports textual; usable from scripts and notebooks."""
