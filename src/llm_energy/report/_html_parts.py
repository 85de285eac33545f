"""Private building blocks of `llm_energy.report.html`: the inline CSS and small HTML/text helpers.

They live apart from `html` only to keep that module (the report's sections, `render_report` and
`write_report`) short; nothing here is public API. The safety rule of the report holds here too:
every helper that takes a data value escapes it with `html.escape` (quotes included), except
`_td_safe` and `_kv_table(..., escape=False)`, whose callers pass markup already built safe.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import pandas as pd

_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;
padding-bottom:.2rem;margin-top:2rem}
.meta{color:#57606a;font-size:.9rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.2rem .45rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.configs td{white-space:nowrap}.scroll{overflow-x:auto}
table.kv th{width:14rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:.85rem;color:#57606a}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .6rem;font-size:.88rem}
code{font-size:.85em;background:#f6f8fa;padding:0 .2rem}
ul.headline{font-size:1.02rem;padding-left:1.2rem}ul.headline li{margin:.3rem 0}
details{margin-top:1rem}details>summary{cursor:pointer}
details>summary>h2,details>summary>h3{display:inline-block;margin:0}
"""


def _kv_table(rows: Iterable[tuple[str, str]], *, escape: bool = True) -> str:
    """A two-column table; cells are escaped unless the caller already built safe markup."""
    out = []
    for key, value in rows:
        k, v = (_e(key), _e(value)) if escape else (key, value)
        out.append(f"<tr><th>{k}</th><td>{v}</td></tr>")
    return '<table class="kv">' + "".join(out) + "</table>"


def _rows_table(head: Iterable[str], rows: Iterable[str], *, css_class: str = "configs") -> str:
    """A scrollable table: escaped header cells over `rows`, `<tr>` markup built safe by the caller.

    `css_class` is a fixed name chosen by the caller (never data): `configs` (no wrapping) by default.
    """
    return (
        f'<div class="scroll"><table class="{css_class}"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _td(value: object, *, num: bool = False) -> str:
    """A table cell holding `value`, escaped; numeric cells are right-aligned."""
    return f'<td class="n">{_e(value)}</td>' if num else f"<td>{_e(value)}</td>"


def _td_safe(markup: str) -> str:
    """A right-aligned numeric cell holding text that is already safe HTML (from `_num`, `_pm`)."""
    return f'<td class="n">{markup}</td>'


def _e(value: object) -> str:
    """Escape any value for HTML text or attributes (quotes included)."""
    return html.escape(str(value), quote=True)


def _text(value: object) -> str:
    """Escaped text of a data value; containers as compact JSON."""
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return _e(json.dumps(value, default=str))
    return _e(_num(value) if isinstance(value, int | float) and not isinstance(value, bool) else value)


def _num(value: object) -> str:
    """Format a number for people: 3 significant digits, thousands separated, '–' when missing.

    The result is safe HTML: a value that is not a number comes back escaped.
    """
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _e(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _pm(value: float, unc: float) -> str:
    """'value ± uncertainty', the uncertainty to two significant digits."""
    if not math.isfinite(value):
        return "–"
    if not math.isfinite(unc):
        return _num(value)
    return f"{_num(value)} ± {_num(unc) if abs(unc) >= 100 else f'{unc:.2g}'}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%" if math.isfinite(value) else "–"


def _list(values: Iterable[float]) -> str:
    return ", ".join(_num(v) for v in values)


def _distinct(column: pd.Series) -> list[Any]:
    """Distinct non-missing values of a column, in first-seen order."""
    seen: list[Any] = []
    for value in column:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            continue
        if value not in seen:
            seen.append(value)
    return seen


def _json_value(cell: object) -> object:
    if isinstance(cell, str):
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


def _json_list(cell: object) -> list[Any]:
    parsed = _json_value(cell)
    if isinstance(parsed, list):
        return parsed
    return [] if parsed is None else [parsed]
