# RAG studies (Barnett & Brannelly 2024): corpus + QA -> BM25 / dense index -> top-k passages per
# question (with recall@k) -> a `rag` dataset (prepare_dataset, split by gold passage) that the
# usual tokenize / finetune / evaluate rules train on and score -> G-Eval judgements -> tables.


rule build_corpus:
    input:
        asset=lambda wc: STUDY.corpus_asset(wc.corpus),
        local=lambda wc: STUDY.local_sources(STUDY.rag["corpora"][wc.corpus]["source"]),
    output:
        corpus=PATHS.corpus("{corpus}"),
        qa=PATHS.qa("{corpus}"),
        card=PATHS.corpus_card("{corpus}"),
        manifest=PATHS.corpus_manifest("{corpus}"),
    log:
        PATHS.log("build_corpus", "{corpus}"),
    benchmark:
        PATHS.benchmark("build_corpus", "{corpus}")
    conda:
        DATA_ENV
    resources:
        **STUDY.resources_for("build_corpus"),
    params:
        spec=lambda wc: as_json(STUDY.corpus_params(wc.corpus)),
    shell:
        "python -m ftgen build-corpus --spec {params.spec:q} --asset={input.asset:q} "
        "--corpus {output.corpus:q} --qa {output.qa:q} --card {output.card:q} "
        "--manifest {output.manifest:q} > {log:q} 2>&1"


rule index:
    input:
        corpus=PATHS.corpus("{corpus}"),
        asset=lambda wc: STUDY.encoder_asset(wc.retriever),
    output:
        index=directory(PATHS.index("{corpus}", "{retriever}")),
    log:
        PATHS.log("index", "{corpus}.{retriever}"),
    benchmark:
        PATHS.benchmark("index", "{corpus}.{retriever}")
    conda:
        ML_ENV
    threads: STUDY.threads_for("index")
    resources:
        **STUDY.resources_for("index"),
    params:
        spec=lambda wc: as_json(STUDY.index_params(wc.retriever)),
    shell:
        "python -m ftgen index --retriever {wildcards.retriever:q} --corpus {input.corpus:q} "
        "--spec {params.spec:q} --asset={input.asset:q} --index {output.index:q} --threads {threads} > {log:q} 2>&1"


rule retrieve:
    input:
        index=PATHS.index("{corpus}", "{retriever}"),
        corpus=PATHS.corpus("{corpus}"),
        qa=PATHS.qa("{corpus}"),
        asset=lambda wc: STUDY.encoder_asset(wc.retriever),
    output:
        retrieved=PATHS.retrieved("{corpus}", "{retriever}"),
        recall=PATHS.recall("{corpus}", "{retriever}"),
    log:
        PATHS.log("retrieve", "{corpus}.{retriever}"),
    benchmark:
        PATHS.benchmark("retrieve", "{corpus}.{retriever}")
    conda:
        ML_ENV
    threads: STUDY.threads_for("retrieve")
    resources:
        **STUDY.resources_for("retrieve"),
    params:
        spec=lambda wc: as_json(STUDY.retrieve_params(wc.corpus, wc.retriever)),
    shell:
        "python -m ftgen retrieve --retriever {wildcards.retriever:q} --index {input.index:q} "
        "--corpus {input.corpus:q} --qa {input.qa:q} --spec {params.spec:q} --asset={input.asset:q} "
        "--retrieved {output.retrieved:q} --recall {output.recall:q} --threads {threads} > {log:q} 2>&1"


rule judge_steps:
    input:
        model=lambda wc: STUDY.judge_model(),
    output:
        steps=PATHS.judge_steps(),
    log:
        PATHS.log("judge_steps"),
    benchmark:
        PATHS.benchmark("judge_steps")
    conda:
        ML_ENV
    threads: STUDY.threads_for("judge_steps")
    resources:
        **STUDY.resources_for("judge_steps"),
    params:
        spec=lambda wc: STUDY.judge_spec(),
        cache=STUDY.judge_cache(),
    shell:
        "python -m ftgen judge-steps --spec {params.spec:q} --model={input.model:q} "
        "--cache {params.cache:q} --steps {output.steps:q} --threads {threads} > {log:q} 2>&1"


rule judge:
    input:
        model=lambda wc: STUDY.judge_model(),
        steps=PATHS.judge_steps(),
        predictions=PATHS.predictions(*CELL_WILDCARDS),
        examples=PATHS.examples("{dataset}"),
    output:
        judgements=PATHS.judgements(*CELL_WILDCARDS),
        summary=PATHS.judge_summary(*CELL_WILDCARDS),
    log:
        PATHS.log("judge", CELL),
    benchmark:
        PATHS.benchmark("judge", CELL)
    conda:
        ML_ENV
    threads: STUDY.threads_for("judge")
    resources:
        **STUDY.resources_for("judge"),
    params:
        spec=lambda wc: STUDY.judge_spec(),
        cache=STUDY.judge_cache(),
    shell:
        "python -m ftgen judge --spec {params.spec:q} --model={input.model:q} "
        "--predictions {input.predictions:q} --examples {input.examples:q} --steps {input.steps:q} "
        "--cache {params.cache:q} --cell {wildcards.model:q} {wildcards.model_tag:q} {wildcards.dataset:q} "
        "--judgements {output.judgements:q} --summary {output.summary:q} --threads {threads} > {log:q} 2>&1"


rule rag_report:
    input:  # functions: built with the job only, not for every study parsing this rule
        judged=lambda wc: STUDY.cell_paths(PATHS.judge_summary, set(STUDY.rag_datasets)),
        recall=lambda wc: STUDY.recall_files(),
        # read next to each judge.json: declared, so a missing one is rebuilt before this job runs
        predictions=lambda wc: STUDY.cell_paths(
            PATHS.predictions, set(STUDY.rag_datasets)
        ),
        judgements=lambda wc: STUDY.cell_paths(
            PATHS.judgements, set(STUDY.rag_datasets)
        ),
    output:
        parquet=PATHS.table("rag", "parquet"),
        csv=report(
            PATHS.table("rag", "csv"), caption="../report/rag.rst", category="Tables"
        ),
        md=PATHS.table("rag", "md"),
        manifest=PATHS.table("rag", "manifest.json"),
    log:
        PATHS.log("rag_report"),
    benchmark:
        PATHS.benchmark("rag_report")
    conda:
        DATA_ENV
    resources:
        **STUDY.resources_for("rag_report"),
    params:
        spec=lambda wc: as_json(STUDY.rag_report_params()),
    shell:
        "python -m ftgen rag-report --spec {params.spec:q} --recall {input.recall:q} "
        "--parquet {output.parquet:q} --csv {output.csv:q} --md {output.md:q} "
        "--manifest {output.manifest:q} --judged {input.judged:q} > {log:q} 2>&1"


rule rag_plot:
    input:
        table=PATHS.table("rag", "parquet"),
    output:
        png=report(
            PATHS.plot("rag_vs_size", "png"),
            caption="../report/rag_vs_size.rst",
            category="Plots",
        ),
        pdf=PATHS.plot("rag_vs_size", "pdf"),
    log:
        PATHS.log("rag_plot"),
    benchmark:
        PATHS.benchmark("rag_plot")
    conda:
        PLOT_ENV
    resources:
        **STUDY.resources_for("rag_plot"),
    params:
        criteria=list(STUDY.judge.get("criteria", {})),
    shell:
        "python -m ftgen rag-plot --table {input.table:q} --criteria {params.criteria:q} "
        "--png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"
