"""The plot step's output check and the shared figure writer (ftgen.report.plots)."""

import pytest

from ftgen.report.plots import PLOTS, make_plots, plot_files, save, subplots
from ftgen.step import UsageError


def test_plot_files_pairs_png_and_pdf_by_plot_name(tmp_path):
    outputs = [
        str(tmp_path / "a" / "delta_heatmap.pdf"),
        str(tmp_path / "b" / "delta_heatmap.png"),
        str(tmp_path / "score_vs_size.png"),
        str(tmp_path / "score_vs_size.pdf"),
    ]
    assert plot_files(outputs) == {"delta_heatmap": (outputs[1], outputs[0]), "score_vs_size": (outputs[2], outputs[3])}


def test_a_plot_without_its_pdf_or_an_unknown_name_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as err:  # checked before the table is read
        make_plots(table=str(tmp_path / "absent.parquet"), outputs=[str(tmp_path / "delta_heatmap.png")])
    assert str(err.value) == "argument --outputs: no file for ['delta_heatmap.pdf']"
    with pytest.raises(UsageError, match=r"\['heat'\] name no plot \(plots: delta_heatmap, "):
        plot_files([str(tmp_path / "heat.png"), str(tmp_path / "heat.pdf")])
    assert len(PLOTS) == 6


def test_save_writes_png_and_pdf_whole(tmp_path):
    fig, ax = subplots(1, 1)
    ax.plot([0, 1], [1, 0])
    png, pdf = tmp_path / "p" / "x.png", tmp_path / "q" / "x.pdf"
    save(fig, str(png), str(pdf))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["x.png"]  # no temp file left behind
