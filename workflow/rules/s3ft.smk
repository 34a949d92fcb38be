# S3FT (Gupta et al. 2025): the base model answers its training prompts (an artifact, judged per
# example), paraphrases the gold answer where its own answer was rejected, and the S3FT training
# set (variant `s3ft`) takes its own answer / accepted paraphrase / gold answer as the target.
# SFT and S3FT then run through the same tokenize + finetune rules on the same examples.


rule self_answers:
    input:
        model=PATHS.base_model("{model}"),
        examples=PATHS.examples("{dataset}"),
    output:
        predictions=PATHS.self_answers("{model}", "{dataset}"),
        scores=PATHS.self_scores("{model}", "{dataset}"),
    log:
        PATHS.log("self_answers", "{model}", "{dataset}"),
    benchmark:
        PATHS.benchmark("self_answers", "{model}", "{dataset}")
    conda:
        ML_ENV
    threads: STUDY.threads_for("self_answers")
    resources:
        **STUDY.resources_for("self_answers"),
    params:
        spec=lambda wc: as_json(STUDY.self_answer_params(wc.dataset, wc.model)),
        format=STUDY.finetune["format"],
    shell:
        "python -m ftgen evaluate --model {input.model:q} --base {input.model:q} "
        "--examples {input.examples:q} --spec {params.spec:q} --cell {wildcards.model:q} "
        "base {wildcards.dataset:q} {params.format:q} 0 --predictions {output.predictions:q} "
        "--scores {output.scores:q} --threads {threads} > {log:q} 2>&1"


rule s3ft_dataset:
    input:
        model=PATHS.base_model("{model}"),
        examples=PATHS.examples("{dataset}"),
        self_answers=PATHS.self_answers("{model}", "{dataset}"),
    output:
        targets=PATHS.s3ft_examples("{model}", "{dataset}"),
        card=PATHS.s3ft_card("{model}", "{dataset}"),
        paraphrases=PATHS.paraphrases("{model}", "{dataset}"),
    log:
        PATHS.log("s3ft_dataset", "{model}", "{dataset}"),
    benchmark:
        PATHS.benchmark("s3ft_dataset", "{model}", "{dataset}")
    conda:
        ML_ENV
    threads: STUDY.threads_for("s3ft_dataset")
    resources:
        **STUDY.resources_for("s3ft_dataset"),
    params:
        spec=lambda wc: as_json(STUDY.s3ft_params(wc.dataset, wc.model)),
    shell:
        "python -m ftgen s3ft-dataset --model {input.model:q} --examples {input.examples:q} "
        "--self-answers {input.self_answers:q} --spec {params.spec:q} --targets {output.targets:q} "
        "--card {output.card:q} --paraphrases {output.paraphrases:q} --threads {threads} > {log:q} 2>&1"


rule s3ft_report:
    input:
        table=PATHS.table("transfer", "parquet"),
        cards=lambda wc: STUDY.s3ft_cards(),
        predictions=lambda wc: STUDY.cell_paths(PATHS.predictions),
    output:
        csv=report(
            PATHS.table("s3ft", "csv"), caption="../report/s3ft.rst", category="Tables"
        ),
        md=PATHS.table("s3ft", "md"),
        png=report(
            PATHS.plot("s3ft", "png"),
            caption="../report/s3ft_plot.rst",
            category="Plots",
        ),
        pdf=PATHS.plot("s3ft", "pdf"),
    log:
        PATHS.log("s3ft_report"),
    benchmark:
        PATHS.benchmark("s3ft_report")
    conda:
        PLOT_ENV
    resources:
        **STUDY.resources_for("s3ft_report"),
    params:
        spec=lambda wc: as_json(STUDY.s3ft_report_params()),
    shell:
        "python -m ftgen s3ft-report --spec {params.spec:q} --table {input.table:q} "
        "--predictions {input.predictions:q} --cards {input.cards:q} "
        "--csv {output.csv:q} --md {output.md:q} --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"
