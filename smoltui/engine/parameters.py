"""Declared parameters (of workbench operations and settings): name, kind, help and bounds, read from text or values.

The CLI builds its arguments and options from these declarations and a form its fields, and both hand the text
a person typed to `Parameter.parse`, so a bad value is refused with the same sentence everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smoltui.engine.config import parse_number
from smoltui.engine.errors import UserError

KINDS = ("int", "float", "str", "flag")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Parameter:
    """One parameter: `option` is its CLI flag ("--scale"), None for a positional argument."""

    name: str
    kind: str  # one of KINDS; a "flag" is a switch, False unless given
    help: str  # one sentence
    default: Any = None  # the value when not given; None means unset (and refused where `required`)
    required: bool = False
    option: str | None = None
    metavar: str | None = None  # the placeholder in the CLI's help, e.g. "X"
    minimum: float | None = None  # inclusive unless minimum_exclusive
    maximum: float | None = None  # inclusive
    minimum_exclusive: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def label(self) -> str:
        """How a person names it: the flag, or the name of the argument or setting."""
        return self.option or self.name

    def parse(self, value: Any) -> Any:
        """`value` (text as typed, or already a number/bool) as this parameter's type, checked against its bounds."""
        if value is None or (isinstance(value, str) and not value.strip() and self.kind != "str"):
            if self.required:
                raise UserError(f"{self.label} is required: {self.help}", field=self.name)
            return False if self.kind == "flag" else self.default
        if self.kind == "flag":
            return self._flag(value)
        if self.kind == "str":
            return self._text(value)
        return self._check_bounds(self._number(value))

    def _flag(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise UserError(f"{self.label} is a switch: give true or false, not {value!r}.", field=self.name)

    def _text(self, value: Any) -> str:
        text = str(value)
        if self.required and not text.strip():
            raise UserError(f"{self.label} is required: {self.help}", field=self.name)
        if self.choices and text not in self.choices:
            raise UserError(f"{self.label} must be one of {', '.join(self.choices)}, not {text!r}.", field=self.name)
        return text

    def _number(self, value: Any) -> int | float:
        whole = self.kind == "int"
        number = parse_number(value, whole=whole) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            example = "3" if whole else "0.5"
            raise UserError(f"{self.label} takes a number such as {example}, not {value!r}.", field=self.name)
        if whole:
            if isinstance(number, float) and not number.is_integer():
                raise UserError(f"{self.label} takes a whole number, not {value!r}.", field=self.name)
            return int(number)
        if number != number or number in (float("inf"), float("-inf")):
            raise UserError(f"{self.label} takes a finite number, not {value!r}.", field=self.name)
        return float(number)

    def _check_bounds(self, number: int | float) -> int | float:
        low, high = self.minimum, self.maximum
        if low is not None and (number <= low if self.minimum_exclusive else number < low):
            bound = f"above {low:g}" if self.minimum_exclusive else f"at least {low:g}"
            raise UserError(f"{self.label} must be {bound}, not {number:g}; pass a larger value.", field=self.name)
        if high is not None and number > high:
            raise UserError(
                f"{self.label} must be at most {high:g}, not {number:g}; pass a smaller value.", field=self.name
            )
        return number


def parse_values(parameters: tuple[Parameter, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter parsed from `given` (missing ones take their default); unknown names refused."""
    known = {parameter.name for parameter in parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise UserError(f"unknown parameter {unknown[0]!r}; the parameters are: {names}.", field=unknown[0])
    return {parameter.name: parameter.parse(given.get(parameter.name)) for parameter in parameters}
