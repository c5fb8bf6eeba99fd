"""ISO 4217 registry: every active currency code with its exponent (minor unit digits).

Codes without a minor unit in ISO 4217 (precious metals XAU/XAG/XPD/XPT, XDR, XSU,
XUA, the test and "no currency" codes XTS/XXX) are not money a ledger can hold in
minor units and are deliberately absent. Withdrawn codes (HRK, BGN, ANG, SLL, ZWL, ...)
are absent too: an unknown code is a 422, never a guess.
"""

from __future__ import annotations

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR "
    "MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG "
    "SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD "
    "USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _ZERO.split()},
    **{code: 2 for code in _TWO.split()},
    **{code: 3 for code in _THREE.split()},
    **{code: 4 for code in _FOUR.split()},
}


def is_known_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


def exponent(code: str) -> int:
    """The number of decimals of `code`; KeyError for an unknown code."""
    return CURRENCY_EXPONENTS[code]
