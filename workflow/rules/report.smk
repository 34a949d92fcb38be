# Tables and plots of the whole study (and the items of `snakemake --report`).


rule aggregate:
    input:  # functions: the 13,248 files of yang2024 are built once, with the job
        scores=lambda wc: all_scores(),
        predictions=lambda wc: all_predictions(),
    output:
        parquet=f"{R}/tables/transfer.parquet",
        csv=report(
            f"{R}/tables/transfer.csv",
            caption="../report/transfer.rst",
            category="Tables",
        ),
        md=f"{R}/tables/transfer.md",
        manifest=f"{R}/tables/transfer.manifest.json",
    log:
        f"{LOGS}/aggregate.log",
    conda:
        DATA_ENV
    resources:
        **site("aggregate"),
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        spec=as_json(STUDY.aggregate_params()),
    shell:
        "python -m ftgen aggregate --params {params.spec:q} --parquet {output.parquet:q} "
        "--csv {output.csv:q} --md {output.md:q} --manifest {output.manifest:q} {input.scores:q} > {log:q} 2>&1"


rule plots:
    input:
        f"{R}/tables/transfer.parquet",
    output:
        **{
            f"{name}_png": report(
                plot_files()[f"{name}_png"],
                caption=f"../report/{name}.rst",
                category="Plots",
            )
            for name in PLOTS
        },
        **{f"{name}_pdf": plot_files()[f"{name}_pdf"] for name in PLOTS},
    log:
        f"{LOGS}/plots.log",
    conda:
        PLOT_ENV
    resources:
        **site("aggregate"),
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        format=STUDY.finetune_cfg.get("format", 0),
        shots=min(STUDY.eval_cfg["shots"]),
    shell:
        "python -m ftgen plot --table {input:q} --format {params.format:q} --shots {params.shots:q} "
        "--outputs {output:q} > {log:q} 2>&1"
