"""lobstream benchmarks: ``python -m benchmarks.run [--smoke] [--json PATH]`` (see run.py)."""
