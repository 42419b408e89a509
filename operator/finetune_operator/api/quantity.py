"""Kubernetes resource quantities, parsed exactly and in bounded time.

Like k8s.io/apimachinery's resource.Quantity, a value is kept as a decimal mantissa and a scale and
never expanded into its digits: "1e999999" costs as little as "1". Only the exponent's digits are
bounded (an int64, as `strconv.ParseInt(suffix[1:], 10, 64)` bounds it there).
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

# The grammar of resource.ParseQuantity: a signed decimal number and an optional binary suffix
# (Ki..Ei), decimal suffix (n, u, m, k, M..E) or decimal exponent of whole digits (e3, E-2).
# fullmatch, not `$`: `$` also matches before a trailing newline, and "1\n" is no quantity.
_QUANTITY = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<named>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
INT64_MAX = 2**63 - 1
# Exact arithmetic for any mantissa that fits the models' 64 characters times 2**60, and exponents
# as large as an int64 can name, without Overflow or rounding.
_EXACT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[decimal.InvalidOperation])


def parse_quantity(value: int | str) -> Decimal:
    """The exact value of a quantity; ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a quantity")
    number = Decimal(match["num"])
    named = match["named"]
    if named in _BINARY:
        return _EXACT.multiply(number, Decimal(2 ** _BINARY[named]))
    exponent = _DECIMAL.get(named or "", 0) if match["exponent"] is None else _exponent(match["exponent"], value)
    try:
        return _EXACT.scaleb(number, exponent)
    except decimal.InvalidOperation:
        # Beyond even Decimal's exponent range (about 10**18): no resource is that large or that small.
        # (Kubernetes truncates such an exponent to 32 bits; this parser keeps its sign and size.)
        return Decimal(0) if exponent < 0 or not number else Decimal("Infinity").copy_sign(number)


def _exponent(text: str, value: str) -> int:
    """An exponent's digits, bounded as Kubernetes bounds them (an int64), before any arithmetic."""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > INT64_MAX:
        raise ValueError(f"{value!r} is not a quantity: its exponent does not fit in 64 bits")
    return -int(digits) if text.startswith("-") else int(digits)


def is_quantity(value: int | str) -> bool:
    try:
        parse_quantity(value)
    except ValueError:
        return False
    return True


def is_whole(quantity: Decimal) -> bool:
    """Whole, decided on mantissa and scale (int() of "1e999999" would spell out a million digits)."""
    return quantity == quantity.to_integral_value(context=_EXACT)


def in_range(quantity: Decimal) -> bool:
    """Resource quantities are never negative, and Kubernetes holds them in an int64."""
    return Decimal(0) <= quantity <= INT64_MAX


def is_extended_resource(name: str) -> bool:
    """Extended resources (device plugins, HAMi) are domain-prefixed names outside kubernetes.io."""
    if "/" not in name:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))
