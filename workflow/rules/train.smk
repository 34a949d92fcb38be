# Fine-tuning: one job per (model, training dataset, variant, prompt format, size, seed).
# Checkpoints go to a folder that is not a declared output, so a rerun resumes a killed job;
# each retry (the SLURM profile's `retries`) asks for attempt x runtime, after a TIMEOUT.


rule finetune:
    input:
        model=f"{R}/models/{{model}}",
        tokenized=f"{R}/tokenized/{{model}}/{{dataset}}/{{variant}}.f{{format}}",
    output:
        directory(
            f"{R}/finetuned/{{model}}/{{dataset}}.{{variant}}.f{{format}}.n{{size}}.s{{seed}}"
        ),
    log:
        f"{LOGS}/finetune/{{model}}/{{dataset}}.{{variant}}.f{{format}}.n{{size}}.s{{seed}}.log",
    benchmark:
        f"{BENCH}/finetune/{{model}}/{{dataset}}.{{variant}}.f{{format}}.n{{size}}.s{{seed}}.tsv"
    conda:
        ML_ENV
    threads: res("finetune", "threads")
    resources:
        **site("finetune"),
        mem_mb=res("finetune", "mem_mb"),
        runtime=lambda wc, attempt: res("finetune", "runtime") * attempt,
        gpu=res("finetune", "gpu"),
        nodes=res("finetune", "nodes"),
        procs=res("finetune", "procs"),
    params:
        recipe=lambda wc: as_json(
            STUDY.recipe(
                FineTune(
                    wc.dataset, wc.variant, int(wc.format), int(wc.size), int(wc.seed)
                )
            )
        ),
        checkpoints=lambda wc: f"{R}/checkpoints/{wc.model}/{wc.dataset}.{wc.variant}.f{wc.format}.n{wc.size}.s{wc.seed}",
    shell:
        "python -m ftgen launch --procs {resources.procs} --nodes {resources.nodes} -- "
        "finetune --model {input.model:q} --tokenized {input.tokenized:q} "
        "--params {params.recipe:q} --out {output:q} --checkpoints {params.checkpoints:q} "
        "--threads {threads} > {log:q} 2>&1"
