"""Numbers, currencies, dates and times in the user's locale and time zone (Babel), as template
filters: ``{{ event.price | currency('EUR') }}`` is ``799,00 €`` for a French user and ``€799.00``
for an English one; ``{{ event.departure_at | datetime('short') }}`` is in the user's own zone.

The locale is the profile's ``locale`` (or ``language``), else :data:`DEFAULT_LOCALE`; the zone its
``timezone``, else UTC. A render passes them as the context's :data:`LOCALE` and :data:`ZONE`
(names no template can read: the validator refuses every variable but profile and event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from jinja2 import Undefined, pass_context

DEFAULT_LOCALE = "en"
#: The context's names for the render's locale and zone.
LOCALE, ZONE = "__locale__", "__zone__"
#: Formats a date filter takes: Babel's names, or a CLDR pattern of at most this many characters.
MAX_PATTERN = 40


def user_locale(profile: Mapping[str, Any]) -> str | None:
    """The profile's locale (``pt-BR``, ``pt_BR``, ``fr``), if it has one as text."""
    for key in ("locale", "language"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().replace("_", "-")
    return None


@lru_cache(maxsize=256)
def babel_locale(tag: str | None) -> Locale:
    """Babel's locale for ``tag``, else its language's, else the default."""
    for candidate in (tag, (tag or "").split("-")[0], DEFAULT_LOCALE):
        if candidate:
            try:
                return Locale.parse(candidate, sep="-")
            except (UnknownLocaleError, ValueError):
                continue
    return Locale.parse(DEFAULT_LOCALE)


def zone_of(profile: Mapping[str, Any]) -> Any:
    name = profile.get("timezone")
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


def format_context(profile: Mapping[str, Any], locale: str | None = None) -> dict[str, Any]:
    """The variables a render's filters read: the locale (``locale`` overrides the profile's)."""
    return {LOCALE: babel_locale(locale or user_locale(profile)), ZONE: zone_of(profile)}


def _locale(context: Any) -> Locale:
    return context.get(LOCALE) or babel_locale(None)


def _missing(value: Any) -> None:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()


def _number(value: Any) -> Decimal | int | float:
    _missing(value)
    if isinstance(value, bool):
        raise TypeError("a number to format, not true or false")
    if isinstance(value, int | float | Decimal):
        return value
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"'{str(value)[:40]}' is not a number") from None


def _moment(value: Any) -> datetime | date:
    _missing(value)
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{value[:40]}' is not a date or time (ISO 8601)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise TypeError(f"a date or time to format, not {type(value).__name__}")


def _pattern(format: Any) -> str:
    if not isinstance(format, str) or not 0 < len(format) <= MAX_PATTERN:
        raise ValueError(f"a format is short, medium, long, full or a pattern of at most {MAX_PATTERN}")
    return format


@pass_context
def currency(context: Any, value: Any, code: Any, format: Any = None) -> str:
    """An amount in ``code`` (ISO 4217: EUR, USD), as the user's locale writes it."""
    if not isinstance(code, str) or len(code) != 3:
        raise ValueError("currency() takes a three-letter currency code: currency('EUR')")
    return str(babel_numbers.format_currency(_number(value), code.upper(), format=format,
                                             locale=_locale(context)))


@pass_context
def number(context: Any, value: Any, digits: Any = None) -> str:
    """A number with the locale's separators; ``digits``: exactly that many after the point."""
    if digits is None:
        return str(babel_numbers.format_decimal(_number(value), locale=_locale(context)))
    if not isinstance(digits, int) or not 0 <= digits <= 10:
        raise ValueError("number() takes 0 to 10 digits")
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return str(babel_numbers.format_decimal(_number(value), format=pattern, locale=_locale(context),
                                            decimal_quantization=True))


@pass_context
def percent(context: Any, value: Any) -> str:
    """0.25 as ``25 %`` (fr) or ``25%`` (en)."""
    return str(babel_numbers.format_percent(_number(value), locale=_locale(context)))


@pass_context
def format_date(context: Any, value: Any, format: Any = "medium") -> str:
    moment = _moment(value)
    if isinstance(moment, datetime):
        moment = moment.astimezone(context.get(ZONE) or UTC).date()
    return str(babel_dates.format_date(moment, _pattern(format), locale=_locale(context)))


@pass_context
def format_datetime(context: Any, value: Any, format: Any = "medium") -> str:
    moment = _moment(value)
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(), UTC)
    return str(babel_dates.format_datetime(moment, _pattern(format), tzinfo=context.get(ZONE) or UTC,
                                           locale=_locale(context)))


@pass_context
def format_time(context: Any, value: Any, format: Any = "short") -> str:
    moment = _moment(value)
    if not isinstance(moment, datetime):
        raise TypeError("time() formats a moment, not a date")
    return str(babel_dates.format_time(moment, _pattern(format), tzinfo=context.get(ZONE) or UTC,
                                       locale=_locale(context)))


FORMAT_FILTERS: dict[str, Callable[..., str]] = {
    "currency": currency, "number": number, "percent": percent,
    "date": format_date, "datetime": format_datetime, "time": format_time}
