"""The explorer's blueprints: pages (HTML), files (the run's images and figures), api (renders, scores,
flags) and export (CSV / Parquet downloads)."""
