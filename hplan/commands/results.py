"""``hplan results``: re-measure the tables of ``benchmarks/results.toml`` and write docs/results.md.

Datasets, models and evaluations are cached under ``--runs`` and reused when their settings match,
so a second run only rewrites the page, and a killed run resumes. ``--only NAME`` re-measures one
table; the page keeps every other table as last measured (with its own date and commit): from the
cache, or, for a table the cache has no rows of (a fresh clone), its section of the page as it was.
An evaluation's key holds every setting that played it, not the code: after a change to the planner,
``--only NAME --remeasure`` plays that table's evaluations again (its datasets and models are kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def results_command(
    definition: Path = typer.Option(None, "--definition", help="results definition (default: benchmarks/results.toml)"),
    only: list[str] = typer.Option([], "--only", help="measure only this table (repeatable); the page keeps the others"),
    out: Path = typer.Option(Path("docs/results.md"), "--out", help="the results page (figures go beside it in results/)"),
    runs: Path = typer.Option(Path("runs/results"), "--runs", help="cache of datasets, models and evaluations"),
    device: str = typer.Option("auto", "--device", help="torch device for training and planning: auto, cpu, cuda"),
    threads: Optional[int] = typer.Option(1, "--threads", min=1, help="torch CPU threads (1 is fastest on 2 busy cores)"),
    check: bool = typer.Option(False, "--check", help="validate the definition (every scenario and override), run nothing"),
    page_only: bool = typer.Option(False, "--page-only",
                                   help="measure nothing: rewrite the page from the cached evaluations"),
    remeasure: bool = typer.Option(False, "--remeasure",
                                   help="with --only: discard those tables' cached evaluations and play them again "
                                        "(datasets and models are kept): after a change of code the cache cannot "
                                        "see, such as the planner's"),
    readme: Optional[Path] = typer.Option(
        None, "--readme", help="README whose headline table (between its results markers) is rewritten "
                               "(default: README.md beside benchmarks/ when the default definition writes the default page)"),
) -> None:
    """Measure every table of the results definition (or --only some) and regenerate docs/results.md."""
    import pandas as pd
    import torch

    from hplan.device import resolve_device
    from hplan.io import check_out_dir, check_out_file, write_text
    from hplan.results.definition import DEFAULT_DEFINITION, load_definition
    from hplan.errors import HplanError
    from hplan.results.measure import Paths, discard_measurements, measure_table, provenance
    from hplan.results.page import page, previous_sections, readme_block, replace_readme_block, table_section

    console = Console()
    spec = load_definition(definition or DEFAULT_DEFINITION)
    root = DEFAULT_DEFINITION.parent.parent
    if readme is None and definition is None and out.resolve() == (root / "docs" / "results.md").resolve():
        readme = root / "README.md"  # only the committed page's headline table: a page elsewhere is a draft
    if remeasure and page_only:
        raise HplanError("--remeasure: --page-only measures nothing, so there is nothing to play again")
    if remeasure and not only:  # hours of evaluations, gone by one flag: name them
        raise HplanError("--remeasure: name the tables to play again with --only (their cached evaluations are discarded)")
    if readme is not None and replace_readme_block(_read(readme), "") is None:
        raise HplanError(f"{readme}: --readme: no results markers in it (add the two lines from README.md's Results section)")
    selected = spec.select(tuple(only))
    check_out_file(out, option="--out")  # before anything is measured
    check_out_dir(runs, option="--runs")
    console.print(f"[bold green]ok[/] {spec.source}: {len(spec.tables)} table(s)", highlight=False)
    if check:
        return
    if threads is not None:
        torch.set_num_threads(threads)
    torch_device = str(resolve_device(device))
    paths = Paths(runs)
    if remeasure:
        for table in selected:
            if discard_measurements(paths, table):
                console.print(f"{table.name}: cached evaluations discarded", highlight=False)
    for table in selected:
        measure_table(spec, table, paths, lambda text: console.print(text, highlight=False), device=torch_device,
                      cached_only=page_only)
    sections, frames, metas = [], {}, {}
    earlier = previous_sections(out.read_text(encoding="utf-8", errors="replace")) if out.is_file() else {}
    for table in spec.tables:
        rows_path = paths.table(table)
        frames[table.name] = pd.read_parquet(rows_path) if rows_path.exists() else None
        metas[table.name] = json.loads(rows_path.with_suffix(".json").read_text()) if rows_path.exists() else None
        if frames[table.name] is None and table.name in earlier:  # measured elsewhere: keep it as it was
            sections.append(earlier[table.name])
            continue
        sections.append(table_section(spec, table, frames[table.name], metas[table.name], out.parent / "results"))
    write_text(out, page(spec, sections, provenance(torch_device), out.parent))
    console.print(f"wrote {out}", highlight=False)
    if readme is not None:
        import os

        link = os.path.relpath(out.resolve(), readme.resolve().parent)
        before = _read(readme)
        updated = replace_readme_block(before, readme_block(spec, frames, metas, link, before))
        write_text(readme, updated or "")
        console.print(f"rewrote the headline table of {readme}", highlight=False)


def _read(path: Path) -> str:
    from hplan.errors import HplanError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise HplanError(f"{path}: --readme: cannot read it ({err.__class__.__name__})") from None


def register(app: typer.Typer) -> None:
    app.command("results")(results_command)
