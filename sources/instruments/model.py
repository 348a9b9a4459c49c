"""One tradable instrument, venue-neutral: what it is and what its sizes mean.

A book or trade size on the wire is not always an amount of the base currency:
Deribit's inverse perpetuals and futures count ``amount`` in USD, Binance COIN-M
counts contracts worth ``contractSize`` USD each. Code that turns sizes into
volumes or notionals must ask the instrument (:meth:`Instrument.base_amount`,
:meth:`Instrument.notional`) instead of assuming base units; getting this wrong
would overstate a BTC-PERPETUAL trade of 10 USD as 10 BTC.

Numbers are floats, as in :mod:`state.events`: every venue quotes them with at
most 15 significant digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

SPOT = "spot"
PERPETUAL = "perpetual"
FUTURE = "future"
OPTION = "option"
KINDS = (SPOT, PERPETUAL, FUTURE, OPTION)
#: Kinds that have an expiry.
EXPIRING = (FUTURE, OPTION)

#: A wire size is an amount of the base currency (spot, linear contracts, options).
BASE = "base"
#: A wire size is an amount of the quote currency (Deribit inverse perpetuals and
#: futures: ``amount`` in USD).
QUOTE = "quote"
#: A wire size is a number of contracts of ``contract_size`` each: quote currency
#: for inverse contracts (Binance COIN-M, 100 USD for BTCUSD_PERP), base otherwise.
CONTRACTS = "contracts"
SIZE_UNITS = (BASE, QUOTE, CONTRACTS)

CALL = "call"
PUT = "put"
OPTION_TYPES = (CALL, PUT)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument as a venue lists it.

    ``symbol`` is exactly the name used to subscribe (Coinbase ``product_id``,
    Deribit ``instrument_name``, Binance upper-case symbol). Prices are in
    ``quote`` per unit of ``base``; ``settle`` is the currency profit and loss is
    paid in. ``inverse`` contracts are quoted in ``quote`` but margined and settled
    in ``base``, and their face value is fixed in ``quote``. ``tick_size`` is the
    price step, ``size_increment`` and ``min_size`` are in ``size_unit`` as on the
    wire. ``expiry_ms`` is epoch milliseconds (None for spot and perpetuals).
    ``volume_24h`` is the venue's 24 h traded volume in ``quote`` where its list
    gives one, else None.

    The constructor checks the invariants the conversions rely on, so a parser bug
    cannot produce an instrument that converts sizes wrongly; it raises ValueError.
    """

    venue: str
    symbol: str
    kind: str
    base: str
    quote: str
    settle: str
    tick_size: float
    size_increment: float
    min_size: float
    size_unit: str = BASE
    contract_size: float = 1.0
    inverse: bool = False
    expiry_ms: Optional[int] = None
    strike: Optional[float] = None
    option_type: Optional[str] = None
    active: bool = True
    volume_24h: Optional[float] = None

    def __post_init__(self) -> None:
        problem = self._invariant_problem()
        if problem:
            raise ValueError(f"{self.venue} {self.symbol!r}: {problem}")

    def _invariant_problem(self) -> str:
        if self.kind not in KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(KINDS)}"
        if self.size_unit not in SIZE_UNITS:
            return f"size unit {self.size_unit!r} is not one of {', '.join(SIZE_UNITS)}"
        for name in ("tick_size", "size_increment", "min_size", "contract_size"):
            if not _positive(getattr(self, name)):
                return f"{name} {getattr(self, name)!r} is not a positive finite number"
        if self.volume_24h is not None and not (_positive(self.volume_24h) or self.volume_24h == 0):
            return f"volume_24h {self.volume_24h!r} is not a finite number >= 0"
        if self.size_unit == QUOTE and not self.inverse:
            return "sizes in the quote currency are only meaningful for inverse contracts"
        if self.kind == SPOT and (self.inverse or self.size_unit != BASE):
            return "spot sizes are in the base currency"
        if (self.expiry_ms is not None) != (self.kind in EXPIRING):
            return f"a {self.kind} {'needs' if self.kind in EXPIRING else 'has no'} expiry"
        if self.kind == OPTION:
            if self.option_type not in OPTION_TYPES or self.strike is None \
                    or not _positive(self.strike):
                return "an option needs a positive strike and option_type call or put"
        elif self.strike is not None or self.option_type is not None:
            return "only options have a strike and option_type"
        return ""

    def base_amount(self, size: float, price: float) -> float:
        """The base-currency amount a wire ``size`` stands for at ``price``.

        For inverse contracts this depends on the price: 10 USD of BTC-PERPETUAL
        at 40,000 USD is 0.00025 BTC. Raises ValueError unless ``price`` is a
        positive finite number.
        """
        _check_price(price)
        return amounts(self.size_unit, self.contract_size, self.inverse, size, price)[0]

    def notional(self, size: float, price: float) -> float:
        """The value of a wire ``size`` at ``price``, in the quote currency.

        For options ``price`` is the premium, so this is the premium paid (in BTC
        for Deribit's BTC options, whose ``quote`` is BTC). Raises ValueError
        unless ``price`` is a positive finite number.
        """
        _check_price(price)
        return amounts(self.size_unit, self.contract_size, self.inverse, size, price)[1]


def amounts(size_unit: str, contract_size: float, inverse: bool, size: float,
            price: float) -> "tuple[float, float]":
    """``(base amount, quote notional)`` of a wire ``size`` at a positive ``price``:
    the one place sizes are converted, for instruments and for trade parsers."""
    if size_unit == BASE:
        return size, size * price
    face = size if size_unit == QUOTE else size * contract_size
    return (face / price, face) if inverse else (face, face * price)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and 0.0 < value < math.inf


def _check_price(price: float) -> None:
    if not 0.0 < price < math.inf:
        raise ValueError(f"price {price!r} is not a positive finite number")
