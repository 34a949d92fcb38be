# S3FT (Gupta et al. 2025): the base model answers its training prompts (an artifact, judged per
# example), paraphrases the gold answer where its own answer was rejected, and the S3FT training
# set (variant `s3ft`) takes its own answer / accepted paraphrase / gold answer as the target.
# SFT and S3FT then run through the same tokenize + finetune rules on the same examples.


rule self_answers:
    input:
        model=f"{R}/models/{{model}}",
        examples=f"{R}/data/{{dataset}}/examples.parquet",
    output:
        predictions=f"{R}/s3ft/{{model}}/{{dataset}}/self.jsonl",
        scores=f"{R}/s3ft/{{model}}/{{dataset}}/self.scores.json",
    log:
        f"{LOGS}/self_answers/{{model}}/{{dataset}}.log",
    benchmark:
        f"{BENCH}/self_answers/{{model}}/{{dataset}}.tsv"
    conda:
        ML_ENV
    threads: res("evaluate", "threads")
    resources:
        **site("evaluate"),
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    params:
        spec=lambda wc: as_json(STUDY.self_answer_params(wc.dataset, wc.model)),
        format=STUDY.finetune_cfg.get("format", 0),
    shell:
        "python -m ftgen evaluate --model {input.model:q} --base {input.model:q} "
        "--examples {input.examples:q} --params {params.spec:q} --cell {wildcards.model:q} "
        "base {wildcards.dataset:q} {params.format:q} 0 --predictions {output.predictions:q} "
        "--scores {output.scores:q} --threads {threads} > {log:q} 2>&1"


rule s3ft_dataset:
    input:
        model=f"{R}/models/{{model}}",
        examples=f"{R}/data/{{dataset}}/examples.parquet",
        self_answers=f"{R}/s3ft/{{model}}/{{dataset}}/self.jsonl",
    output:
        examples=f"{R}/s3ft/{{model}}/{{dataset}}/examples.parquet",
        card=f"{R}/s3ft/{{model}}/{{dataset}}/card.json",
        paraphrases=f"{R}/s3ft/{{model}}/{{dataset}}/paraphrases.jsonl",
    log:
        f"{LOGS}/s3ft_dataset/{{model}}/{{dataset}}.log",
    benchmark:
        f"{BENCH}/s3ft_dataset/{{model}}/{{dataset}}.tsv"
    conda:
        ML_ENV
    threads: res("evaluate", "threads")
    resources:
        **site("evaluate"),
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    params:
        spec=lambda wc: as_json(STUDY.s3ft_params(wc.dataset, wc.model)),
    shell:
        "python -m ftgen s3ft-dataset --model {input.model:q} --examples {input.examples:q} "
        "--self {input.self_answers:q} --params {params.spec:q} --out {output.examples:q} "
        "--card {output.card:q} --paraphrases {output.paraphrases:q} --threads {threads} > {log:q} 2>&1"


rule s3ft_report:
    input:
        table=f"{R}/tables/transfer.parquet",
        cards=lambda wc: s3ft_cards(),
        predictions=lambda wc: all_predictions(),
    output:
        csv=report(
            f"{R}/tables/s3ft.csv", caption="../report/s3ft.rst", category="Tables"
        ),
        md=f"{R}/tables/s3ft.md",
        png=report(
            f"{R}/plots/s3ft.png", caption="../report/s3ft_plot.rst", category="Plots"
        ),
        pdf=f"{R}/plots/s3ft.pdf",
    log:
        f"{LOGS}/s3ft_report.log",
    conda:
        PLOT_ENV
    resources:
        **site("aggregate"),
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        spec=lambda wc: as_json(STUDY.s3ft_report_params()),
        eval_dir=lambda wc, input: str(
            Path(input.table).parents[1] / "eval" / STUDY.model_name
        ),
    shell:
        "python -m ftgen s3ft-report --params {params.spec:q} --table {input.table:q} --eval-dir {params.eval_dir:q} "
        "--csv {output.csv:q} --md {output.md:q} --png {output.png:q} --pdf {output.pdf:q} "
        "{input.cards:q} > {log:q} 2>&1"
