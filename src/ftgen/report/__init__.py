"""The study's tables and plots, built from the eval cells' files.

`tables` formats and writes (markdown, mean ± SE [CI], p-values); `plots` draws the transfer
figures and holds the figure writer; `transfer`, `rag` and `s3ft` are the report steps of the
three kinds of study. `plots` (and the plotting functions of `rag` and `s3ft`) need matplotlib,
which only the plot rules' environment has: nothing here imports it at package import.
"""

# the transfer study's figures (ftgen.report.plots draws them; the `plots` rule declares them)
PLOTS = (
    "delta_heatmap",
    "delta_by_relation",
    "delta_by_domain",
    "score_vs_shots",
    "format_sensitivity",
    "score_vs_size",
)
