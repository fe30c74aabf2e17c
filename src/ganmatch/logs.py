"""Logging for Snakemake scripts: everything a job prints goes to its log file, inputs first; a failure's
reason also reaches the terminal, and a failed or terminated job leaves no temporary file behind."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path


def script_logging(smk) -> logging.Logger:
    """Send stderr and logging of a `script:` job to its log and record its inputs and outputs.

    A failed job's log therefore starts with the inputs it read and ends with the error naming the file;
    the error's message is also printed on the terminal (Snakemake itself shows only the log's path).
    """
    terminal = sys.stderr
    if smk.log:
        sys.stderr = open(smk.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        force=True)
    log = logging.getLogger("ganmatch")
    log.info("rule %s, inputs: %s", smk.rule, [str(x) for x in smk.input])
    log.info("outputs: %s", [str(x) for x in smk.output])
    report_failures(smk.rule, [str(x) for x in smk.output], [str(x) for x in smk.log], terminal)
    return log


def report_failures(rule: str, outputs: list[str], logs: list[str], terminal) -> None:
    """On an uncaught error: log the traceback, print its message on `terminal`, remove temporary files.

    SIGTERM (Snakemake or SLURM cancelling the job) becomes SystemExit, so the `finally` of every open
    `ganmatch.data.io.atomic_path` removes its temporary file before the process ends.
    """

    def on_error(kind, error, tb):
        logging.getLogger("ganmatch").error("%s: %s", kind.__name__, error, exc_info=(kind, error, tb))
        removed = remove_temporaries(outputs)
        where = f" (traceback in {logs[0]})" if logs else ""
        message = str(error).strip() or kind.__name__
        print(f"ganmatch: rule {rule} failed: {kind.__name__}: {message}{where}", file=terminal, flush=True)
        if removed:
            logging.getLogger("ganmatch").info("removed temporary files: %s", removed)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    sys.excepthook = on_error
    signal.signal(signal.SIGTERM, on_term)


def remove_temporaries(outputs: list[str]) -> list[str]:
    """Delete the hidden temporary files `ganmatch.data.io.atomic_path` makes beside `outputs`
    (.<name>.XXXX<suffix>)."""
    removed = []
    for out in outputs:
        path = Path(out)
        if not path.parent.is_dir():
            continue
        for tmp in path.parent.glob(f".{path.name}.*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(str(tmp))
    return removed
