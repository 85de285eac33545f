"""One row per measured configuration: the derived figures every plot and table of a report shows.

`config_summary` turns a runs frame (`Store.runs_frame()`, or a CSV export of one) into a table keyed by
(model, engine, mode, batch size, input length, output length). It is the single place where report
figures are derived, so the HTML tables, the console table and the plots never disagree:

- **J per output token** = total-phase GPU energy of one batch / the batch's generated tokens
  (B × L_out), prefill included; its uncertainty is the meter's bound divided the same way.
- **latency per output token** = total-phase duration / L_out: the time each request of the batch
  waits per generated token (what a user sees), which grows with batch size while energy per token
  falls - the trade-off `pareto_frontier` draws.
- Repeats of a configuration are averaged; their uncertainty is the larger of the mean stated bound
  and the standard deviation over repeats.

Only `ok` runs contribute figures; failed runs (`oom`, `error`) are counted in `status`, and a
configuration with no `ok` run keeps NaN figures. Missing per-token columns (CSV exports of older
stores) are derived from energy and token counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

CONFIG_KEYS: Final = ("model", "engine", "mode", "batch_size", "input_len", "output_len")
"""Columns that identify one configuration (one sweep point) in a summary."""

SUMMARY_COLUMNS: Final = (
    *CONFIG_KEYS,
    "runs",
    "status",
    "j_per_token",
    "j_per_token_unc",
    "prefill_j_per_token",
    "decode_j_per_token",
    "prefill_share",
    "energy_j",
    "duration_s",
    "latency_per_token_s",
    "tokens_per_s",
    "mean_power_w",
    "flags",
)
"""Columns of `config_summary`, in order."""

_REQUIRED: Final = ("batch_size", "input_len", "output_len", "total_energy_j")
_LABEL_KEYS: Final = ("model", "engine", "mode")


def config_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per configuration of `frame` with the report's derived figures.

    Args:
        frame: One row per run, as `Store.runs_frame()` returns it (or a CSV export of it). Needs
            `batch_size`, `input_len`, `output_len` and `total_energy_j`; every other column is
            optional (`model`/`engine`/`mode` default to "-", `status` to "ok").

    Returns:
        `SUMMARY_COLUMNS`: the config keys; `runs` (ok runs); `status` (e.g. "ok", "2 ok, 1 oom");
        `j_per_token` and `j_per_token_unc` (J per output token, total phase); `prefill_j_per_token`
        and `decode_j_per_token` (each phase's energy per output token, so they stack to about
        `j_per_token`); `prefill_share`; `energy_j` (one batch, total phase); `duration_s`;
        `latency_per_token_s`; `tokens_per_s` (output tokens per second); `mean_power_w` (W);
        `flags` (the runs' measurement flags, sorted, `;`-joined). Sorted by model, engine, mode,
        input, output and batch size.

    Raises:
        ConfigError: A required column is missing.
    """
    import pandas as pd

    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(f"the runs table lacks column(s) {', '.join(missing)}; is it a runs frame?")
    df = frame.copy()
    for key in _LABEL_KEYS:
        df[key] = df[key].fillna("-").astype(str) if key in df.columns else "-"
    df["status"] = df["status"].fillna("ok").astype(str) if "status" in df.columns else "ok"
    for key in ("batch_size", "input_len", "output_len"):
        df[key] = pd.to_numeric(df[key], errors="coerce")
    if df[["batch_size", "input_len", "output_len"]].isna().to_numpy().any():
        raise ConfigError("batch_size, input_len and output_len must be numbers in every run")
    for key in ("batch_size", "input_len", "output_len"):
        df[key] = df[key].astype("int64")

    tokens = _column(df, "total_tokens", df["batch_size"] * df["output_len"])
    tokens = tokens.where(tokens > 0)
    df["_jpt"] = _column(df, "total_energy_j") / tokens
    df["_unc"] = _column(df, "total_uncertainty_j") / tokens
    df["_pre"] = _column(df, "prefill_energy_j") / tokens
    df["_dec"] = _column(df, "decode_energy_j") / tokens
    df["_energy"] = _column(df, "total_energy_j")
    df["_dur"] = _column(df, "total_duration_s")
    df["_lat"] = df["_dur"] / df["output_len"].where(df["output_len"] > 0)
    df["_tps"] = tokens / df["_dur"].where(df["_dur"] > 0)
    df["_pw"] = _column(df, "total_mean_power_w")
    flag_columns = [c for c in ("prefill_flags", "decode_flags", "total_flags") if c in df.columns]

    rows = []
    for key, group in df.groupby(list(CONFIG_KEYS), sort=True, dropna=False):
        ok = group[group["status"] == "ok"]
        values = ok["_jpt"].dropna().to_numpy(float)
        spread = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        stated = _mean(ok["_unc"])
        flags = {
            flag
            for column in flag_columns
            for cell in ok[column].dropna()
            for flag in str(cell).split(";")
            if flag
        }
        pre, dec = _mean(ok["_pre"]), _mean(ok["_dec"])
        rows.append(
            {
                **dict(zip(CONFIG_KEYS, key, strict=True)),
                "runs": len(ok),
                "status": _status_text(group["status"]),
                "j_per_token": _mean(ok["_jpt"]),
                "j_per_token_unc": float(np.nanmax([stated, spread])) if values.size else float("nan"),
                "prefill_j_per_token": pre,
                "decode_j_per_token": dec,
                "prefill_share": pre / (pre + dec) if pre + dec > 0 else float("nan"),
                "energy_j": _mean(ok["_energy"]),
                "duration_s": _mean(ok["_dur"]),
                "latency_per_token_s": _mean(ok["_lat"]),
                "tokens_per_s": _mean(ok["_tps"]),
                "mean_power_w": _mean(ok["_pw"]),
                "flags": ";".join(sorted(flags)),
            }
        )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    order = ["model", "engine", "mode", "input_len", "output_len", "batch_size"]
    return out.sort_values(order, kind="stable").reset_index(drop=True)


def series_label(row: pd.Series, keys: tuple[str, ...]) -> str:
    """Return a short legend label from the `keys` of a summary row ("vllm/cudagraphs, in 512")."""
    names = {"input_len": "in", "output_len": "out"}
    parts = []
    labels = [str(row[k]) for k in keys if k in _LABEL_KEYS]
    if labels:
        parts.append("/".join(labels))
    parts += [
        f"B{row[k]}" if k == "batch_size" else f"{names.get(k, k)} {row[k]}"
        for k in keys
        if k not in _LABEL_KEYS
    ]
    return ", ".join(parts)


def varying(summary: pd.DataFrame, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Return those of `keys` that a legend must name: the ones taking more than one value.

    When the model, engine or mode varies, engine and mode are named together ("vllm/eager", never
    a bare "eager").
    """
    named = {k for k in keys if summary[k].nunique(dropna=False) > 1}
    if named & set(_LABEL_KEYS):
        named |= {"engine", "mode"} & set(keys)
    return tuple(k for k in keys if k in named)


def _column(df: pd.DataFrame, name: str, default: pd.Series | None = None) -> pd.Series:
    """Return `df[name]` as floats; `default` (or NaN) where the column is absent."""
    import pandas as pd

    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    if default is not None:
        return default.astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


def _mean(values: pd.Series) -> float:
    """Mean of the finite values; NaN when there is none (never a RuntimeWarning)."""
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _status_text(statuses: pd.Series) -> str:
    """'ok' when every run is ok, else counts per status ('2 ok, 1 oom')."""
    counts = statuses.value_counts(sort=False)
    if list(counts.index) == ["ok"]:
        return "ok"
    return ", ".join(f"{int(n)} {status}" for status, n in sorted(counts.items()))
