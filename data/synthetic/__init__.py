"""The public spelling ``python -m data.synthetic`` of the command ``python -m tools.synthetic``.

The synthetic dataset writer is a fixture of the commands and lives in :mod:`tools.synthetic`;
the data package only reads datasets. Nothing here is imported by library code.
"""
