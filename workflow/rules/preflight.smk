# Before a cluster run: what the hub must provide for the study (not part of `all`; a target of
# its own: `snakemake preflight --configfile ...`, or <study>_preflight under config/hpc.yaml).
# It fails where the hub is not reachable (the table then comes from the fixtures).


rule preflight:
    output:
        table=PATHS.preflight(),
    log:
        PATHS.log("preflight"),
    benchmark:
        PATHS.benchmark("preflight")
    conda:
        ML_ENV
    resources:
        **STUDY.resources_for("preflight"),
    params:
        spec=as_json(STUDY.preflight_params()),
    shell:
        "python -m ftgen preflight --spec {params.spec:q} --out {output.table:q} > {log:q} 2>&1"
