"""The `dpc` application: the command line (cli.py, started by entry.py), folder runs with worker
processes (batch.py) and safe file handling (files.py), over the `codec` library and `eval`.

`codec/` and `bitstream/` never import this package (tests/test_layout.py holds the rules).
"""
