"""How the course's tables print: one number format per kind of column, for notebooks and the report.

Error rates (any column whose name starts with "WER" or "CER") print as percentages, times and
losses with one decimal, rates as whole numbers, parameter counts with thousands separators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

FIXED_FORMATS: dict[str, str] = {
    "seconds/epoch": "{:.1f}",
    "s/epoch": "{:.1f}",
    "best val loss": "{:.1f}",
    "utterances/s": "{:.0f}",
}


def is_error_rate(column: Any) -> bool:
    """True for WER / CER columns ("WER", "CER greedy", "CER LM", ...)."""
    return str(column).startswith(("WER", "CER"))


def _parameters(value: object) -> str:
    if isinstance(value, (int, float)) and value == value:  # NaN != NaN: a missing count
        return f"{int(value):,}"
    return "-"


def column_formats(frame: pd.DataFrame) -> dict[Any, Callable[[object], str]]:
    """Column -> formatting function for the columns of ``frame`` this module knows."""
    formats: dict[Any, Callable[[object], str]] = {}
    for column in frame.columns:
        if is_error_rate(column):
            formats[column] = "{:.1%}".format
        elif column in FIXED_FORMATS:
            formats[column] = FIXED_FORMATS[column].format
        elif column == "parameters":
            formats[column] = _parameters
    return formats


def styled(frame: pd.DataFrame) -> Styler:
    """``frame.style`` with :func:`column_formats` applied (what a notebook cell shows)."""
    formats: dict[Any, str | Callable[[object], str] | None] = dict(column_formats(frame))  # Styler's own type
    return frame.style.format(formats, na_rep="-")
