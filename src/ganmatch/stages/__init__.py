"""Stage adapters: run one pipeline stage over its input tables (one shard, one method, ...).

Each function here is what one Snakemake script calls; it only orchestrates the pure library modules
(alignment, projection, face attributes, matching, balance, outcomes, downloads) over tables and files.
"""
