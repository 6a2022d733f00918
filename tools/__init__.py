"""Commands: everything but ``main_baseline.py``, each run as ``python -m tools.<name>``."""
