# Studies of how fine-tuning changes an LLM's generalization.
#   snakemake --cores 2                                   # the default study (config/config.yaml)
#   snakemake --cores 2 --configfile config/studies/X.yaml  # another study
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the default study instead of being merged into it.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/rag.smk"
include: "workflow/rules/s3ft.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
