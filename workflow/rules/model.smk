# The base model as one safetensors folder (a GGUF is dequantised once, here).


rule prepare_model:
    input:
        asset=lambda wc: STUDY.model_asset(wc.model),
    output:
        model=directory(PATHS.base_model("{model}")),
    log:
        PATHS.log("prepare_model", "{model}"),
    benchmark:
        PATHS.benchmark("prepare_model", "{model}")
    conda:
        ML_ENV
    resources:
        **STUDY.resources_for("prepare_model"),
    params:
        spec=lambda wc: as_json(STUDY.model_params(wc.model)),
    shell:
        "python -m ftgen prepare-model --spec {params.spec:q} --asset={input.asset:q} "
        "--model {output.model:q} > {log:q} 2>&1"
