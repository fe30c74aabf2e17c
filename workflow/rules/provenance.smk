# Provenance: what code, libraries, CPU, GPU, threads and config produced this run's numbers.


rule provenance:
    """Write provenance.json (and its summary for the report): code, packages, BLAS and torch kernels, CPU ISA, GPU,
    threads, config hash and seed; for the demo, its world checked against resources/demo_world.sha256."""
    input:
        world=[f"{RAW}/truth.json"] if config["source"] == "demo" else [],
    output:
        json=f"{RES}/provenance.json",
        txt=f"{RES}/provenance.txt",
        html=report(f"{RES}/provenance.html", caption="../report/provenance.rst", category="Provenance"),
    log:
        f"{LOGS}/provenance.log",
    conda:
        "../../envs/core.yaml"
    params:
        config=dict(config),
        code=CODE_VERSION,
    script:
        f"{SCRIPTS}/provenance.py"
