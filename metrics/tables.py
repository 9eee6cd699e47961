"""``voxmesh eval``'s outputs: ``OUT.json`` (row name -> figures) and ``OUT.md``, a Markdown table
whose headers name each figure's convention."""

from __future__ import annotations

import json

COLUMNS = {  # header: (key in the results, format)
    "LVE (CodeTalker code: max sq. L2, frames pooled)": ("lip_vertex_error", "{:.4g}"),
    "LVE (MeshTalk/FaceFormer text: max L2)": ("lip_vertex_error_text", "{:.4g}"),
    "MVE": ("mean_vertex_error", "{:.4g}"),
    "FDD (CodeTalker code: gt - pred, sq. displacement)": ("fdd", "{:+.4g}"),
    "l_cover": ("coverage_lip_error", "{:.4g}"), "l_mean": ("mean_sample_lip_error", "{:.4g}"),
    "Div": ("diversity", "{:.4g}"),
    "LSE-D (SyncNet-3D)": ("lse_d", "{:.3f}"), "LSE-C (SyncNet-3D)": ("lse_c", "{:.3f}"),
    "|offset| (model-free, frames)": ("mean_abs_av_offset", "{:.2f}"),
    "FD (style embeddings)": ("fd_style", "{:.3g}"), "FD (SyncNet-3D lip embeddings)": ("fd_sync", "{:.3g}"),
    "style matching": ("style_matching", "{:.3f}"),
}


def _cell(results: dict, key: str, fmt: str) -> str:
    if key not in results:
        return "-"
    text = fmt.format(results[key])
    return text + (" ± " + fmt.format(results[f"{key}_std"]).lstrip("+") if f"{key}_std" in results else "")


def markdown_table(table: dict[str, dict]) -> str:
    """Rows (name -> :func:`~voxmesh.metrics.evaluate.evaluate`'s figures) as one Markdown table:
    the columns any row has a value for, in the order of the papers' tables; "mean ± std" over the
    N samples where a row has several; "-" where a row has none (l_cover, l_mean and Div need
    several samples per clip)."""
    present = [(column, key, fmt) for column, (key, fmt) in COLUMNS.items()
               if any(key in results for results in table.values())]
    lines = ["| model | " + " | ".join(c for c, _, _ in present) + " | samples | clips |",
             "| --- " * (len(present) + 3) + "|"]
    for name, results in table.items():
        cells = [_cell(results, key, fmt) for _, key, fmt in present]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {results.get('samples', 0)} | {results['clips']} |")
    return "\n".join(lines) + "\n"


def write_results(table: dict[str, dict], out_prefix: str) -> tuple[str, str]:
    """``OUT.json`` (row name -> figures) and ``OUT.md`` (the table)."""
    with open(f"{out_prefix}.json", "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    with open(f"{out_prefix}.md", "w") as f:
        f.write(markdown_table(table))
    return f"{out_prefix}.json", f"{out_prefix}.md"
