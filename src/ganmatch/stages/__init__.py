"""Stage adapters: run one pipeline stage over its input tables (one shard, one method, ...).

Each function here is what one Snakemake script calls; it only orchestrates the pure library modules
(`ganmatch.align`, `ganmatch.project`, `ganmatch.matching`, `ganmatch.balance`) over tables and files.
"""
