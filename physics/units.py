"""Unit conversions, defined once (SI inside the plant; these are the exits).

Every module that converts to kWh, months, hours or litres imports from here.
"""

from __future__ import annotations

__all__ = ["CELSIUS_TO_KELVIN", "J_PER_KWH", "L_PER_M3", "SECONDS_PER_HOUR",
           "SECONDS_PER_MONTH", "W_PER_KW"]

#: K at 0 degC (definition)
CELSIUS_TO_KELVIN = 273.15
#: J in one kWh (definition)
J_PER_KWH = 3.6e6
#: s in one hour
SECONDS_PER_HOUR = 3600.0
#: s in the billing month of demand charges (30 days; NREL demand-charge survey convention)
SECONDS_PER_MONTH = 30.0 * 86400.0
#: L in one m3
L_PER_M3 = 1000.0
#: W in one kW
W_PER_KW = 1000.0
