"""ftgen: rerun studies of how fine-tuning changes an LLM's generalization (Snakemake + HF)."""

__version__ = "0.1.0"
