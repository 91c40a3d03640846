"""The `dpc` application, over the `codec` library and `eval`:

    entry.py -> cli.py (commands; arguments.py: options, --help) -> batch.py (one file, or a folder run)
    batch.py -> jobs.py (Task, process one file), report.py (a folder run's books), pool.py (worker processes)
    cli.py -> scale_out.py (--ray: a Cluster, handed to batch.py, which calls its `run`: no import back)
    scale_out.py -> batch.py (run_folder), jobs.py; its workers report to report.py's public interface
    signals.py, files.py (safe outputs), progress.py, errors.py and exit_codes.py: used by the others

Each arrow: "imports". No import cycle inside this package, no module over 400 lines.

`codec/` and `bitstream/` never import this package (tests/test_layout.py holds the rules).
"""
