# Source paper_cache: the reference study's released outputs (matrices, latents, annotations, matches).

if config["source"] == "paper_cache":

    rule verify_paper_cache:
        """Checksums of every released file this run reads, whether a download rule fetched it or it was
        placed by hand: the configured sha256/md5, else the sha256 recorded in downloads.lock on first use.
        """
        input:
            [e["path"] for e in paper_cache_entries().values()],
        output:
            PAPER_VERIFIED,
        log:
            f"{LOGS}/download/paper_cache_verify.log",
        conda:
            "../../envs/core.yaml"
        params:
            entries=paper_cache_entries(),
            lock=config["downloads"]["lock"],
        script:
            f"{SCRIPTS}/verify_paper_cache.py"

    rule compare_paper_matches:
        """Our matches beside the released precomputed matches, pair for pair (paper_cache.released)."""
        input:
            index=f"{RES}/images.parquet",
            matches=[f"{RES}/matches/{m}.parquet" for m in config["paper_cache"]["released"]],
            released=list(config["paper_cache"]["released"].values()),
            verified=PAPER_VERIFIED,
        output:
            pairs=f"{RES}/paper_matches/pairs.parquet",
            summary=f"{RES}/paper_matches/summary.parquet",
            markdown=f"{RES}/paper_matches/summary.md",
            csv=report(
                f"{RES}/paper_matches/summary.csv", caption="../report/paper_matches.rst", category="Matches"
            ),
        log:
            f"{LOGS}/paper_matches.log",
        conda:
            "../../envs/core.yaml"
        params:
            methods=list(config["paper_cache"]["released"]),
            treatment=config["treatment"],
        script:
            f"{SCRIPTS}/compare_paper_matches.py"
