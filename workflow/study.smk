# The rules of one study (its config: a config/studies/*.yaml, or config/config.yaml). The
# Snakefile includes this file for a single-study run, and once per study when
# workflow/studies.smk imports the Snakefile as a module for each listed study.


include: "rules/common.smk"
include: "rules/assets.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/rag.smk"
include: "rules/s3ft.smk"
include: "rules/report.smk"
include: "rules/preflight.smk"


def all_targets():
    return STUDY.all_targets()
