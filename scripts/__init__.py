"""Training, measurement and fuzzing scripts, run from the repository root as `python -m scripts.NAME`."""
