# One job per (model tag, eval dataset, prompt format, shots). The base model is evaluated
# once per cell and every fine-tuned model is compared with that same file. A cell's job hands it
# to this machine's model server for its model (ftgen.serve): the cells of a model share one load.
# On a cluster the cells of one model tag are one group job (profiles/slurm: group-components),
# scored one after another (resource eval_slots, one per group job) by one loaded model.


rule evaluate:
    input:
        model=lambda wc: PATHS.model(wc.model, wc.model_tag),
        base=PATHS.base_model("{model}"),
        examples=PATHS.examples("{dataset}"),
    output:
        predictions=PATHS.predictions(*CELL_WILDCARDS),
        scores=PATHS.scores(*CELL_WILDCARDS),
    log:
        PATHS.log("evaluate", CELL),
    benchmark:
        PATHS.benchmark("evaluate", CELL)
    group:
        EVAL_GROUP
    conda:
        ML_ENV
    threads: STUDY.threads_for("evaluate")
    resources:
        **STUDY.resources_for("evaluate"),
    params:
        spec=lambda wc: STUDY.eval_spec(
            wc.dataset, int(wc.format), int(wc.shots), wc.model
        ),
    shell:
        "python -m ftgen evaluate --model {input.model:q} --base {input.base:q} "
        "--examples {input.examples:q} --spec {params.spec:q} --cell {wildcards.model:q} "
        "{wildcards.model_tag:q} {wildcards.dataset:q} {wildcards.format:q} {wildcards.shots:q} "
        "--predictions {output.predictions:q} --scores {output.scores:q} "
        "--threads {threads} > {log:q} 2>&1"
