# Tables and plots of the whole study (and the items of `snakemake --report`).


rule aggregate:
    input:  # functions: an HPC study's thousands of cell files are listed with the job only
        scores=lambda wc: STUDY.cell_paths(PATHS.scores),
        predictions=lambda wc: STUDY.cell_paths(PATHS.predictions),
    output:
        parquet=PATHS.table("transfer", "parquet"),
        csv=report(
            PATHS.table("transfer", "csv"),
            caption="../report/transfer.rst",
            category="Tables",
        ),
        md=PATHS.table("transfer", "md"),
        manifest=PATHS.table("transfer", "manifest.json"),
    log:
        PATHS.log("aggregate"),
    benchmark:
        PATHS.benchmark("aggregate")
    conda:
        DATA_ENV
    resources:
        **STUDY.resources_for("aggregate"),
    params:
        spec=as_json(STUDY.aggregate_params()),
    shell:
        "python -m ftgen aggregate --spec {params.spec:q} --parquet {output.parquet:q} "
        "--csv {output.csv:q} --md {output.md:q} --manifest {output.manifest:q} --scores {input.scores:q} > {log:q} 2>&1"


rule plots:
    input:
        table=PATHS.table("transfer", "parquet"),
    output:
        **{
            f"{name}_png": report(
                PATHS.plot(name, "png"),
                caption=f"../report/{name}.rst",
                category="Plots",
            )
            for name in PLOTS
        },
        **{f"{name}_pdf": PATHS.plot(name, "pdf") for name in PLOTS},
    log:
        PATHS.log("plots"),
    benchmark:
        PATHS.benchmark("plots")
    conda:
        PLOT_ENV
    resources:
        **STUDY.resources_for("plots"),
    params:
        format=STUDY.finetune["format"],
        shots=min(STUDY.evaluate["shots"]),
    shell:
        "python -m ftgen plot --table {input.table:q} --format {params.format:q} --shots {params.shots:q} "
        "--outputs {output:q} > {log:q} 2>&1"


rule compute_table:
    input:
        finetuned=lambda wc: STUDY.finetuned_folders(),
        scores=lambda wc: STUDY.cell_paths(PATHS.scores),
    output:
        md=PATHS.table("compute", "md"),
        csv=PATHS.table("compute", "csv"),
    log:
        PATHS.log("compute_table"),
    benchmark:
        PATHS.benchmark("compute_table")
    conda:
        DATA_ENV
    resources:
        **STUDY.resources_for("compute_table"),
    shell:
        "python -m ftgen compute-table --finetuned {input.finetuned:q} --scores {input.scores:q} "
        "--md {output.md:q} --csv {output.csv:q} > {log:q} 2>&1"
