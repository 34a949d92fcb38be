# Tables and plots of the whole study (and the items of `snakemake --report`).


rule aggregate:
    input:
        scores=all_scores(),
        predictions=all_predictions(),
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
        mem_mb=res("aggregate", "mem_mb"),
    params:
        spec=as_json(STUDY.aggregate_params()),
    shell:
        "python -m ftgen aggregate --params {params.spec:q} --parquet {output.parquet:q} "
        "--csv {output.csv:q} --md {output.md:q} --manifest {output.manifest:q} {input.scores:q} > {log:q} 2>&1"


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
        domains_png=report(
            plot_files()["domains_png"],
            caption="../report/domains.rst",
            category="Plots",
        ),
        domains_pdf=plot_files()["domains_pdf"],
    log:
        f"{LOGS}/plots.log",
    conda:
        PLOT_ENV
    params:
        format=STUDY.finetune_cfg.get("format", 0),
        shots=min(STUDY.eval_cfg["shots"]),
    shell:
        "python -m ftgen plot --table {input:q} --format {params.format} --shots {params.shots} "
        "--heatmap {output.heatmap_png:q} {output.heatmap_pdf:q} "
        "--bars {output.bars_png:q} {output.bars_pdf:q} "
        "--domains {output.domains_png:q} {output.domains_pdf:q} > {log:q} 2>&1"
