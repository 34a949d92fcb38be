# Fine-tuning: one job per (model, training dataset, variant, prompt format, size, seed).
# Checkpoints go to a folder that is not a declared output, so a rerun resumes a killed job;
# each retry (the SLURM profile's `retries`) asks for attempt x runtime, after a TIMEOUT.


rule finetune:
    input:
        model=PATHS.base_model("{model}"),
        tokenized=PATHS.tokenized("{model}", "{dataset}", "{variant}", "{format}"),
    output:
        finetuned=directory(PATHS.finetuned("{model}", PATHS.finetune_id())),
    log:
        PATHS.log("finetune", "{model}", PATHS.finetune_id()),
    benchmark:
        PATHS.benchmark("finetune", "{model}", PATHS.finetune_id())
    conda:
        ML_ENV
    threads: STUDY.threads_for("finetune")
    resources:
        **STUDY.resources_for("finetune"),
    params:
        recipe=lambda wc: as_json(STUDY.recipe(STUDY.finetune_of(wc))),
        checkpoints=lambda wc: PATHS.checkpoints(wc.model, STUDY.finetune_of(wc).id),
    shell:
        "python -m ftgen launch --procs {resources.procs} --nodes {resources.nodes} "
        "--cpu-allocator {resources.cpu_allocator:q} -- "
        "finetune --model {input.model:q} --tokenized {input.tokenized:q} "
        "--recipe {params.recipe:q} --finetuned {output.finetuned:q} --checkpoints {params.checkpoints:q} "
        "--threads {threads} > {log:q} 2>&1"
