# One job per (model tag, eval dataset, prompt format, shots). The base model is evaluated
# once per cell and every fine-tuned model is compared with that same file.


rule evaluate:
    input:
        model=lambda wc: model_dir(wc.model, wc.tag),
        base=f"{R}/models/{{model}}",
        examples=f"{R}/data/{{dataset}}/examples.parquet",
    output:
        predictions=f"{R}/eval/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}/predictions.jsonl",
        scores=f"{R}/eval/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}/scores.json",
    log:
        f"{LOGS}/evaluate/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}.tsv"
    conda:
        ML_ENV
    threads: res("evaluate", "threads")
    resources:
        **site("evaluate"),
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    params:
        spec=lambda wc: eval_spec(wc.dataset, int(wc.format), int(wc.shots), wc.model),
    shell:
        "python -m ftgen evaluate --model {input.model:q} --base {input.base:q} "
        "--examples {input.examples:q} --params {params.spec:q} --cell {wildcards.model:q} "
        "{wildcards.tag:q} {wildcards.dataset:q} {wildcards.format:q} {wildcards.shots:q} "
        "--predictions {output.predictions:q} --scores {output.scores:q} "
        "--threads {threads} > {log:q} 2>&1"
