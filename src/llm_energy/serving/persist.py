"""A serving run in the results store: its summary, requests, power samples and meter windows as rows.

`serving_rows` turns a `ServingRun` into the rows of the store's serving tables (`store.serving`
holds the tables and reads them back); `write_serving_run` writes them in one transaction.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from llm_energy.errors import StoreError
from llm_energy.serving.metrics import e2e_s, tpot_s, ttft_s
from llm_energy.store.serving import ServingRows, write_serving_rows

if TYPE_CHECKING:
    from llm_energy.serving.replay_run import ServingRun
    from llm_energy.store.db import Store

__all__ = ["serving_rows", "write_serving_run"]


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict | list | tuple | str | int | float | bool) or value is None:
        return value
    if hasattr(value, "items"):
        return dict(value.items())
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), default=_plain, ensure_ascii=False)


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def serving_rows(run: ServingRun) -> ServingRows:
    """Return `run` as rows of the serving tables (JSON columns serialised).

    Raises:
        TypeError: A value of the run is not JSON-serialisable.
        ValueError: A value cannot be serialised (e.g. a circular reference).
    """
    cfg = run.config
    s, e, w = run.summary, run.energy, run.windows
    per_request = run.attribution.per_request_j if run.attribution is not None else {}
    run_row = (
        run.run_id,
        run.created_at,
        "partial" if run.partial else "ok",
        run.exit_reason,
        cfg.get("server"),
        cfg.get("model"),
        cfg.get("server_kind"),
        cfg.get("replicas"),
        cfg.get("policy"),
        cfg.get("trace"),
        cfg.get("time_scale"),
        cfg.get("rate_per_s"),
        s.requests,
        s.ok,
        s.failed,
        _num(s.slo_attainment_pct),
        _num(s.ttft.p90_s) if s.ttft else None,
        _num(s.tpot.p90_s) if s.tpot else None,
        _num(e.energy_j) if e else None,
        _num(e.energy_per_request_j) if e else None,
        _num(e.energy_per_output_token_j) if e else None,
        _num(w.client.energy_per_request_j) if w else None,
        _num(w.client.energy_per_output_token_j) if w else None,
        _num(w.gpu.energy_per_request_j) if w and w.gpu else None,
        _num(w.gpu.energy_per_output_token_j) if w and w.gpu else None,
        None if run.lag is None else int(run.lag.flagged),
        _num(run.idle_power_w),
        _dumps(dict(cfg)),
        _dumps(s),
        _dumps(e),
        _dumps(dict(run.per_gpu_energy_j)),
        _dumps(w),
        _dumps(run.lag),
        _dumps(list(run.replica_requests)),
        _dumps(list(run.notes)),
    )
    request_rows = [
        (
            run.run_id,
            r.index,
            r.replica,
            r.scheduled_s,
            r.sent_s,
            r.first_token_s,
            r.done_s,
            r.input_tokens,
            r.output_tokens_requested,
            r.output_tokens_received,
            r.input_tokens_reported,
            int(r.success),
            r.failure,
            r.error,
            r.status_code,
            ttft_s(r),
            tpot_s(r),
            e2e_s(r),
            per_request.get(r.index),
            json.dumps(list(r.token_times_s)),
        )
        for r in run.records
    ]
    sample_rows = [
        (
            run.run_id,
            x.t_s,
            json.dumps(list(x.cpu_pct)),
            json.dumps(list(x.power_w)),
            _num(x.total_power_w),
        )
        for x in run.samples
    ]
    return ServingRows(
        run.run_id, run_row, request_rows, sample_rows, [(run.run_id, a, b, j) for a, b, j in run.intervals]
    )


def write_serving_run(store: Store, run: ServingRun) -> None:
    """Write one serving run (summary, requests, samples, meter windows) in one transaction.

    Raises:
        StoreError: The run_id is stored already, a value is not serialisable, or the write failed;
            nothing is written then.
    """
    try:
        rows = serving_rows(run)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot write serving run to {store.path}: {exc}") from exc
    write_serving_rows(store, rows)
