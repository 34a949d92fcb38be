# Dataset adapter -> normalised, validated, grouped splits (+ card), and tokenized training sets.


rule prepare_dataset:
    input:
        asset=lambda wc: STUDY.dataset_inputs(wc.dataset),
        local=lambda wc: STUDY.local_sources(STUDY.datasets[wc.dataset]["source"]),
    output:
        examples=PATHS.examples("{dataset}"),
        card=PATHS.data_card("{dataset}"),
        manifest=PATHS.data_manifest("{dataset}"),
    log:
        PATHS.log("prepare_dataset", "{dataset}"),
    benchmark:
        PATHS.benchmark("prepare_dataset", "{dataset}")
    conda:
        DATA_ENV
    resources:
        **STUDY.resources_for("prepare_dataset"),
    params:
        spec=lambda wc: as_json(STUDY.dataset_params(wc.dataset)),
    shell:
        "python -m ftgen prepare-data --spec {params.spec:q} --asset={input.asset:q} "
        "--examples {output.examples:q} --card {output.card:q} --manifest {output.manifest:q} > {log:q} 2>&1"


rule tokenize:
    input:
        model=PATHS.base_model("{model}"),
        examples=lambda wc: STUDY.training_examples(wc.model, wc.dataset, wc.variant),
    output:
        tokenized=directory(
            PATHS.tokenized("{model}", "{dataset}", "{variant}", "{format}")
        ),
    log:
        PATHS.log(
            "tokenize",
            "{model}",
            PATHS.tokenized_name("{dataset}", "{variant}", "{format}"),
        ),
    benchmark:
        PATHS.benchmark(
            "tokenize",
            "{model}",
            PATHS.tokenized_name("{dataset}", "{variant}", "{format}"),
        )
    conda:
        ML_ENV
    resources:
        **STUDY.resources_for("tokenize"),
    params:
        spec=lambda wc: as_json(
            STUDY.tokenize_params(wc.dataset, wc.variant, int(wc.format), wc.model)
        ),
    shell:
        "python -m ftgen tokenize --model {input.model:q} --examples {input.examples:q} "
        "--spec {params.spec:q} --tokenized {output.tokenized:q} > {log:q} 2>&1"
