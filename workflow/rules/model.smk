# The base model as one safetensors folder (a GGUF is dequantised once, here).


rule prepare_model:
    input:
        asset=asset_of_model,
    output:
        directory(f"{R}/models/{{model}}"),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        f"{BENCH}/prepare_model/{{model}}.tsv"
    conda:
        ML_ENV
    resources:
        **site("prepare"),
        mem_mb=res("prepare", "mem_mb"),
        runtime=res("prepare", "runtime"),
    params:
        spec=lambda wc: as_json(STUDY.model_params(wc.model)),
    shell:
        "python -m ftgen prepare-model --params {params.spec:q} --asset={input.asset:q} "
        "--out {output:q} > {log:q} 2>&1"
