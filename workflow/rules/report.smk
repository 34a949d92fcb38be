# Tables and plots of the whole study (and the items of `snakemake --report`).


rule aggregate:
    input:
        all_scores(),
    output:
        parquet=f"{R}/tables/transfer.parquet",
        csv=report(
            f"{R}/tables/transfer.csv",
            caption="../report/transfer.rst",
            category="Tables",
        ),
        md=f"{R}/tables/transfer.md",
        manifest=f"{R}/tables/transfer.manifest.json",
    params:
        spec=as_json(STUDY.aggregate_params()),
    log:
        f"{LOGS}/aggregate.log",
    resources:
        mem_mb=res("aggregate", "mem_mb"),
    conda:
        DATA_ENV
    shell:
        "python -m ftgen aggregate --params {params.spec:q} --parquet {output.parquet:q} "
        "--csv {output.csv:q} --md {output.md:q} --manifest {output.manifest:q} {input:q} > {log:q} 2>&1"


rule plots:
    input:
        f"{R}/tables/transfer.parquet",
    output:
        heatmap_png=report(
            plot_files()["heatmap_png"],
            caption="../report/heatmap.rst",
            category="Plots",
        ),
        heatmap_pdf=plot_files()["heatmap_pdf"],
        bars_png=report(
            plot_files()["bars_png"],
            caption="../report/bars.rst",
            category="Plots",
        ),
        bars_pdf=plot_files()["bars_pdf"],
    params:
        format=STUDY.finetune_cfg.get("format", 0),
        shots=min(STUDY.eval_cfg["shots"]),
    log:
        f"{LOGS}/plots.log",
    conda:
        PLOT_ENV
    shell:
        "python -m ftgen plot --table {input:q} --format {params.format} --shots {params.shots} "
        "--heatmap {output.heatmap_png:q} {output.heatmap_pdf:q} "
        "--bars {output.bars_png:q} {output.bars_pdf:q} > {log:q} 2>&1"
