# Dataset adapter -> normalised, validated, grouped splits (+ card), and tokenized training sets.


rule prepare_dataset:
    input:
        asset=asset_of_dataset,
        local=lambda wc: STUDY.local_sources(STUDY.datasets[wc.dataset]["source"]),
    output:
        examples=f"{R}/data/{{dataset}}/examples.parquet",
        card=f"{R}/data/{{dataset}}/card.json",
        manifest=f"{R}/data/{{dataset}}/manifest.json",
    log:
        f"{LOGS}/prepare_dataset/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare_dataset/{{dataset}}.tsv"
    conda:
        DATA_ENV
    resources:
        **site("prepare"),
        mem_mb=res("prepare", "mem_mb"),
        runtime=res("prepare", "runtime"),
    params:
        spec=lambda wc: as_json(STUDY.dataset_params(wc.dataset)),
    shell:
        "python -m ftgen prepare-data --params {params.spec:q} --asset={input.asset:q} "
        "--out {output.examples:q} --card {output.card:q} --manifest {output.manifest:q} > {log:q} 2>&1"


rule tokenize:
    input:
        model=f"{R}/models/{{model}}",
        examples=training_examples,
    output:
        directory(f"{R}/tokenized/{{model}}/{{dataset}}/{{variant}}.f{{format}}"),
    log:
        f"{LOGS}/tokenize/{{model}}/{{dataset}}/{{variant}}.f{{format}}.log",
    benchmark:
        f"{BENCH}/tokenize/{{model}}/{{dataset}}/{{variant}}.f{{format}}.tsv"
    conda:
        ML_ENV
    resources:
        **site("tokenize"),
        mem_mb=res("tokenize", "mem_mb"),
        runtime=res("tokenize", "runtime"),
    params:
        spec=lambda wc: as_json(
            STUDY.tokenize_params(wc.dataset, wc.variant, int(wc.format), wc.model)
        ),
    shell:
        "python -m ftgen tokenize --model {input.model:q} --examples {input.examples:q} "
        "--params {params.spec:q} --out {output:q} > {log:q} 2>&1"
