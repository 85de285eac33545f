"""Grid carbon intensity and electricity price: from GPU energy to kgCO2 and money.

A bundled table (`data/carbon/grid_intensity.json`) gives annual mean grid intensities of a few
regions, with its source and year in the file; `--carbon-intensity` takes a number (gCO2/kWh) or one
of its region names. `Footprint` turns an energy per request and an arrival rate into kWh, kgCO2 and
cost per 1,000 requests and per day. GPU energy only: host, cooling (PUE) and embodied carbon are not
included, which the outputs say.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.units import j_to_kwh

S_PER_DAY = 86400.0


@dataclass(frozen=True)
class GridIntensity:
    """A grid's carbon intensity and where the figure comes from."""

    g_per_kwh: float
    label: str
    """`<region> (<year>, <source>)` for a bundled region, `given` for a number."""


@cache
def grid_table() -> dict[str, Any]:
    """Return the bundled table: `regions` (name → gCO2e/kWh), `year`, `source`, `unit`, `note`."""
    text = resources.files("llm_energy").joinpath("data", "carbon", "grid_intensity.json").read_text()
    table: dict[str, Any] = json.loads(text)
    return table


def regions() -> dict[str, float]:
    """Bundled region name → gCO2e/kWh."""
    return {str(k): float(v) for k, v in grid_table()["regions"].items()}


def parse_carbon_intensity(spec: str | float | None) -> GridIntensity | None:
    """Parse `--carbon-intensity`: a number in gCO2/kWh, or a bundled region name (case-insensitive).

    Raises:
        ConfigError: a negative or non-finite number, or an unknown region (the known ones are listed).
    """
    if spec is None:
        return None
    text = str(spec).strip()
    try:
        value = float(text)
    except ValueError:
        table = regions()
        key = text.lower().replace(" ", "-")
        if key not in table:
            raise ConfigError(
                f"unknown carbon intensity {text!r}: give gCO2/kWh as a number or a region "
                f"({', '.join(sorted(table))})"
            ) from None
        meta = grid_table()
        return GridIntensity(table[key], f"{key} ({meta['year']}, Ember via Our World in Data)")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"carbon intensity must be a number ≥ 0 gCO2/kWh, got {text!r}")
    return GridIntensity(value, "given")


def check_price(price_per_kwh: float | None) -> float | None:
    """Validate `--price` (money per kWh, ≥ 0).

    Raises:
        ConfigError: a negative or non-finite price.
    """
    if price_per_kwh is not None and not (math.isfinite(price_per_kwh) and price_per_kwh >= 0):
        raise ConfigError(f"price must be ≥ 0 per kWh, got {price_per_kwh}")
    return price_per_kwh


@dataclass(frozen=True)
class Footprint:
    """Energy, CO2 and cost of serving requests at a rate (GPU energy only).

    Attributes:
        energy_per_request_j: Mean GPU energy per request.
        rate_per_s: Arrival rate (requests/s); 0 when unknown (no per-day figures).
        carbon_g_per_kwh: Grid intensity, None when not given.
        price_per_kwh: Price, None when not given.
    """

    energy_per_request_j: float
    rate_per_s: float
    carbon_g_per_kwh: float | None = None
    price_per_kwh: float | None = None

    @property
    def kwh_per_1000_requests(self) -> float:
        """KWh per 1,000 requests."""
        return j_to_kwh(self.energy_per_request_j) * 1000

    @property
    def kwh_per_day(self) -> float | None:
        """KWh per day at the rate (None without a rate)."""
        if not self.rate_per_s > 0:
            return None
        return j_to_kwh(self.energy_per_request_j) * self.rate_per_s * S_PER_DAY

    def _co2_kg(self, kwh: float | None) -> float | None:
        if kwh is None or self.carbon_g_per_kwh is None:
            return None
        return kwh * self.carbon_g_per_kwh / 1000

    def _cost(self, kwh: float | None) -> float | None:
        return None if kwh is None or self.price_per_kwh is None else kwh * self.price_per_kwh

    @property
    def co2_kg_per_1000_requests(self) -> float | None:
        """KgCO2 per 1,000 requests."""
        return self._co2_kg(self.kwh_per_1000_requests)

    @property
    def co2_kg_per_day(self) -> float | None:
        """KgCO2 per day at the rate."""
        return self._co2_kg(self.kwh_per_day)

    @property
    def cost_per_1000_requests(self) -> float | None:
        """Cost per 1,000 requests."""
        return self._cost(self.kwh_per_1000_requests)

    @property
    def cost_per_day(self) -> float | None:
        """Cost per day at the rate."""
        return self._cost(self.kwh_per_day)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready figures."""
        return {
            "kwh_per_1000_requests": self.kwh_per_1000_requests,
            "kwh_per_day": self.kwh_per_day,
            "co2_kg_per_1000_requests": self.co2_kg_per_1000_requests,
            "co2_kg_per_day": self.co2_kg_per_day,
            "cost_per_1000_requests": self.cost_per_1000_requests,
            "cost_per_day": self.cost_per_day,
        }

    def lines(self) -> list[str]:
        """Human-readable lines (only the figures that exist)."""
        out = [f"{self.kwh_per_1000_requests:.4g} kWh per 1,000 requests"]
        if self.kwh_per_day is not None:
            out[0] += f", {self.kwh_per_day:.4g} kWh/day"
        if self.co2_kg_per_1000_requests is not None:
            day = self.co2_kg_per_day
            out.append(
                f"{self.co2_kg_per_1000_requests:.4g} kgCO2 per 1,000 requests"
                + (f", {day:.4g} kgCO2/day" if day is not None else "")
            )
        if self.cost_per_1000_requests is not None:
            day_cost = self.cost_per_day
            out.append(
                f"{self.cost_per_1000_requests:.4g} per 1,000 requests"
                + (f", {day_cost:.4g} per day" if day_cost is not None else "")
            )
        return out


__all__ = ["Footprint", "GridIntensity", "check_price", "grid_table", "parse_carbon_intensity", "regions"]
