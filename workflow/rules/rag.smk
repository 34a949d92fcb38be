# RAG studies (Barnett & Brannelly 2024): corpus + QA -> BM25 / dense index -> top-k passages per
# question (with recall@k) -> a `rag` dataset (prepare_dataset, split by gold passage) that the
# usual tokenize / finetune / evaluate rules train on and score -> G-Eval judgements -> tables.


rule build_corpus:
    input:
        asset=lambda wc: corpus_asset(wc.corpus),
        local=lambda wc: STUDY.local_sources(STUDY.rag["corpora"][wc.corpus]["source"]),
    output:
        corpus=f"{R}/rag/{{corpus}}/corpus.parquet",
        qa=f"{R}/rag/{{corpus}}/qa.parquet",
        card=f"{R}/rag/{{corpus}}/card.json",
        manifest=f"{R}/rag/{{corpus}}/manifest.json",
    log:
        f"{LOGS}/build_corpus/{{corpus}}.log",
    benchmark:
        f"{BENCH}/build_corpus/{{corpus}}.tsv"
    conda:
        DATA_ENV
    resources:
        **site("prepare"),
        mem_mb=res("prepare", "mem_mb"),
        runtime=res("prepare", "runtime"),
    params:
        spec=lambda wc: as_json(STUDY.corpus_params(wc.corpus)),
    shell:
        "python -m ftgen build-corpus --params {params.spec:q} --asset={input.asset:q} "
        "--corpus {output.corpus:q} --qa {output.qa:q} --card {output.card:q} "
        "--manifest {output.manifest:q} > {log:q} 2>&1"


rule index:
    input:
        corpus=f"{R}/rag/{{corpus}}/corpus.parquet",
        asset=encoder_asset,
    output:
        directory(f"{R}/rag/{{corpus}}/index.{{retriever}}"),
    log:
        f"{LOGS}/index/{{corpus}}.{{retriever}}.log",
    benchmark:
        f"{BENCH}/index/{{corpus}}.{{retriever}}.tsv"
    conda:
        ML_ENV
    threads: res("retrieval", "threads")
    resources:
        **site("retrieval"),
        mem_mb=res("retrieval", "mem_mb"),
        runtime=res("retrieval", "runtime"),
        gpu=res("retrieval", "gpu"),
    params:
        spec=lambda wc: as_json(STUDY.index_params(wc.retriever)),
    shell:
        "python -m ftgen index --retriever {wildcards.retriever:q} --corpus {input.corpus:q} "
        "--params {params.spec:q} --asset={input.asset:q} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule retrieve:
    input:
        index=f"{R}/rag/{{corpus}}/index.{{retriever}}",
        corpus=f"{R}/rag/{{corpus}}/corpus.parquet",
        qa=f"{R}/rag/{{corpus}}/qa.parquet",
        asset=encoder_asset,
    output:
        retrieved=f"{R}/rag/{{corpus}}/retrieved.{{retriever}}.parquet",
        recall=f"{R}/rag/{{corpus}}/recall.{{retriever}}.json",
    log:
        f"{LOGS}/retrieve/{{corpus}}.{{retriever}}.log",
    benchmark:
        f"{BENCH}/retrieve/{{corpus}}.{{retriever}}.tsv"
    conda:
        ML_ENV
    threads: res("retrieval", "threads")
    resources:
        **site("retrieval"),
        mem_mb=res("retrieval", "mem_mb"),
        runtime=res("retrieval", "runtime"),
        gpu=res("retrieval", "gpu"),
    params:
        spec=lambda wc: as_json(STUDY.retrieve_params(wc.corpus, wc.retriever)),
    shell:
        "python -m ftgen retrieve --retriever {wildcards.retriever:q} --index {input.index:q} "
        "--corpus {input.corpus:q} --qa {input.qa:q} --params {params.spec:q} --asset={input.asset:q} "
        "--out {output.retrieved:q} --recall {output.recall:q} --threads {threads} > {log:q} 2>&1"


rule judge_steps:
    input:
        model=judge_model_dir,
    output:
        f"{R}/judge/steps.json",
    log:
        f"{LOGS}/judge_steps.log",
    conda:
        ML_ENV
    threads: res("judge", "threads")
    resources:
        **site("judge"),
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
    params:
        spec=lambda wc: judge_spec(),
        cache=JUDGE_CACHE,
    shell:
        "python -m ftgen judge-steps --params {params.spec:q} --model={input.model:q} "
        "--cache {params.cache:q} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule judge:
    input:
        model=judge_model_dir,
        steps=f"{R}/judge/steps.json",
        predictions=f"{R}/eval/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}/predictions.jsonl",
        examples=f"{R}/data/{{dataset}}/examples.parquet",
    output:
        jsonl=f"{R}/eval/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}/judgements.jsonl",
        json=f"{R}/eval/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}/judge.json",
    log:
        f"{LOGS}/judge/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}.log",
    benchmark:
        f"{BENCH}/judge/{{model}}/{{tag}}/{{dataset}}/f{{format}}.k{{shots}}.tsv"
    conda:
        ML_ENV
    threads: res("judge", "threads")
    resources:
        **site("judge"),
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
    params:
        spec=lambda wc: judge_spec(),
        cache=JUDGE_CACHE,
    shell:
        "python -m ftgen judge --params {params.spec:q} --model={input.model:q} "
        "--predictions {input.predictions:q} --examples {input.examples:q} --steps {input.steps:q} "
        "--cache {params.cache:q} --cell {wildcards.model:q} {wildcards.tag:q} {wildcards.dataset:q} "
        "--out-jsonl {output.jsonl:q} --out-json {output.json:q} --threads {threads} > {log:q} 2>&1"


rule rag_report:
    input:  # functions: built with the job only, not for every study parsing this rule
        judged=lambda wc: all_judged(),
        recall=lambda wc: all_recall(),
        # read next to each judge.json: declared, so a missing one is rebuilt before this job
        # runs (it was not: a deleted judgements.jsonl broke the report)
        predictions=lambda wc: [
            str(Path(p).with_name("predictions.jsonl")) for p in all_judged()
        ],
        judgements=lambda wc: [
            str(Path(p).with_name("judgements.jsonl")) for p in all_judged()
        ],
    output:
        parquet=f"{R}/tables/rag.parquet",
        csv=report(
            f"{R}/tables/rag.csv", caption="../report/rag.rst", category="Tables"
        ),
        md=f"{R}/tables/rag.md",
        manifest=f"{R}/tables/rag.manifest.json",
    log:
        f"{LOGS}/rag_report.log",
    conda:
        DATA_ENV
    resources:
        **site("aggregate"),
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        spec=lambda wc: as_json(STUDY.rag_report_params()),
    shell:
        "python -m ftgen rag-report --params {params.spec:q} --recall {input.recall:q} "
        "--parquet {output.parquet:q} --csv {output.csv:q} --md {output.md:q} "
        "--manifest {output.manifest:q} {input.judged:q} > {log:q} 2>&1"


rule rag_plot:
    input:
        f"{R}/tables/rag.parquet",
    output:
        png=report(
            f"{R}/plots/rag_vs_size.png",
            caption="../report/rag_vs_size.rst",
            category="Plots",
        ),
        pdf=f"{R}/plots/rag_vs_size.pdf",
    log:
        f"{LOGS}/rag_plot.log",
    conda:
        PLOT_ENV
    resources:
        **site("aggregate"),
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        criteria=list(STUDY.judge.get("criteria", {})),
    shell:
        "python -m ftgen rag-plot --table {input:q} --criteria {params.criteria:q} "
        "--png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"
