"""Logging for Snakemake scripts: everything a job prints goes to its log file, inputs first."""

from __future__ import annotations

import logging
import sys


def script_logging(smk) -> logging.Logger:
    """Send stderr and logging of a `script:` job to its log and record its inputs and outputs.

    A failed job's log therefore starts with the inputs it read and ends with the error naming the file.
    """
    if smk.log:
        sys.stderr = open(smk.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    log = logging.getLogger("ganmatch")
    log.info("rule %s, inputs: %s", smk.rule, [str(x) for x in smk.input])
    log.info("outputs: %s", [str(x) for x in smk.output])
    return log
