"""Commands: every command of the project except ``main_baseline.py`` (``python -m tools.<name>``)."""
