"""Pictures of a labeled catalog: its rows' canonical cutouts, chosen by a selection.

- :func:`select_rows`: a safe evaluator of simple row selections such as
  ``P_FRII > 0.9 and FR_STATUS == 'ok'`` (parsed with :mod:`ast`; only
  comparisons, boolean operators, arithmetic, column names and constants
  are allowed, nothing is ever passed to :func:`eval`);
- :func:`show_catalog`: a labeled catalog (table or file) in, a PNG grid of
  its cutouts out (:mod:`frsurvey.gallery`), cut again from the same image
  source options as ``classify``.
"""

from __future__ import annotations

import ast
import logging
import os
from typing import Any

import numpy as np
from astropy.table import Table

from ._flags import OptionError
from .gallery import DEFAULT_MAX, Gallery, draw_rows
from .io import CatalogError, read_catalog
from .options import ClassifyOptions
from .sources import ImageSource

__all__ = ["MAX_EXPRESSION", "SelectError", "select_rows", "show_catalog"]

log = logging.getLogger(__name__)


#: Longest selection expression accepted, in characters.
MAX_EXPRESSION = 2000


class SelectError(ValueError):
    """Raised for a selection expression that is not allowed, or cannot be evaluated on the table."""


_COMPARE = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}


_ARITHMETIC = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}


_LOGICAL = {ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or}


def _translate(expr: str) -> tuple[str, dict[str, str]]:
    """Return ``expr`` with STILTS-style ``&&``, ``||``, ``!`` as Python words and `quoted names` as identifiers.

    Text inside quotes is left alone. Returns the new text and the mapping
    of placeholder identifiers to the column names written between backticks.
    """
    out: list[str] = []
    names: dict[str, str] = {}
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in "'\"":
            j = i + 1
            while j < n and expr[j] != ch:
                j += 2 if expr[j] == "\\" else 1
            out.append(expr[i : j + 1])
            i = j + 1
        elif ch == "`":
            j = expr.find("`", i + 1)
            if j < 0:
                raise SelectError("a column name opened with ` is not closed")
            key = f"__column_{len(names)}__"
            names[key] = expr[i + 1 : j]
            out.append(f" {key} ")
            i = j + 1
        elif expr.startswith("&&", i):
            out.append(" and ")
            i += 2
        elif expr.startswith("||", i):
            out.append(" or ")
            i += 2
        elif ch == "!" and not expr.startswith("!=", i):
            out.append(" not ")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), names


def _column_values(table: Table, name: str) -> np.ndarray:
    """Return a column as a plain array for comparisons: blanks are NaN (numbers), '' (text) or False (booleans)."""
    col = table[name]
    if getattr(col, "ndim", 1) > 1:
        raise SelectError(f"column {name!r} holds arrays; a selection compares one value per row")
    data = np.ma.getdata(col)
    mask = np.ma.getmaskarray(col)
    kind = data.dtype.kind
    if kind == "b":
        return np.where(mask, False, data)
    if kind in "iu":
        return np.where(mask, np.nan, data.astype(np.float64)) if mask.any() else np.asarray(data)
    if kind == "f":
        return np.where(mask, np.nan, data)
    if kind in "SUO":
        text = [
            "" if m or x is None else (bytes(x).decode("utf-8", "replace") if isinstance(x, bytes) else str(x))
            for x, m in zip(data, mask)
        ]
        return np.array(text, dtype=object)
    raise SelectError(f"column {name!r} has type {data.dtype}, which a selection cannot compare")


class _Evaluator:
    """Evaluates an allowed expression tree over the columns of a table."""

    def __init__(self, table: Table, quoted: dict[str, str]) -> None:
        self.table = table
        self.quoted = quoted
        self.lower = {}
        for c in table.colnames:
            self.lower.setdefault(c.lower(), []).append(c)

    def column(self, name: str) -> np.ndarray:
        name = self.quoted.get(name, name)
        if name not in self.table.colnames:
            matches = self.lower.get(name.lower(), [])
            if len(matches) != 1:
                raise SelectError(f"no column {name!r} in the table; its columns are: {', '.join(self.table.colnames)}")
            name = matches[0]
        return _column_values(self.table, name)

    def __call__(self, node: ast.AST):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise SelectError(
                f"{type(node).__name__} is not allowed in a selection: use column names, numbers, 'text', "
                "comparisons (== != < <= > >= in), and/or/not, & | ~, + - * / // % ** and parentheses"
            )
        return method(node)

    def visit_Expression(self, node: ast.Expression):
        return self(node.body)

    def visit_Name(self, node: ast.Name):
        lowered = node.id.lower()
        if lowered in ("true", "false") and node.id not in self.table.colnames:
            return lowered == "true"
        return self.column(node.id)

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, bool):
            return node.value
        if isinstance(node.value, (int, float)):
            return np.float64(node.value) if abs(node.value) > 2**53 else node.value
        if isinstance(node.value, str):
            return node.value
        raise SelectError(f"the constant {node.value!r} is not allowed in a selection (numbers and 'text' are)")

    def visit_Tuple(self, node: ast.Tuple):
        return [self(e) for e in node.elts]

    visit_List = visit_Tuple

    def visit_UnaryOp(self, node: ast.UnaryOp):
        value = self(node.operand)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            return np.logical_not(value)
        if isinstance(node.op, ast.USub):
            return np.negative(value)
        if isinstance(node.op, ast.UAdd):
            return np.positive(value)
        raise SelectError(f"the operator {type(node.op).__name__} is not allowed")

    def visit_BoolOp(self, node: ast.BoolOp):
        values = [self(v) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = values[0]
        for v in values[1:]:
            result = combine(result, v)
        return result

    def visit_BinOp(self, node: ast.BinOp):
        left, right = self(node.left), self(node.right)
        op = type(node.op)
        if op in _LOGICAL:
            return _LOGICAL[op](left, right)
        if op not in _ARITHMETIC:
            raise SelectError(f"the operator {op.__name__} is not allowed in a selection")
        if any(isinstance(v, list) or _is_text(v) for v in (left, right)):
            raise SelectError("arithmetic works on numbers only")
        if op is ast.Pow:  # in floating point, so that no power can take forever
            left, right = np.float64(left) if np.isscalar(left) else left, np.asarray(right, dtype=np.float64)
        with np.errstate(all="ignore"):
            return _ARITHMETIC[op](left, right)

    def visit_Compare(self, node: ast.Compare):
        result = True
        left = self(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self(comparator)
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, list):
                    raise SelectError("'in' needs a list of constants, e.g. FR_STATUS in ('ok', 'no_image')")
                value = np.isin(np.asarray(left, dtype=object), np.asarray(right, dtype=object))
                value = ~value if isinstance(op, ast.NotIn) else value
            elif type(op) in _COMPARE:
                value = _compare(_COMPARE[type(op)], left, right)
            else:
                raise SelectError(f"the comparison {type(op).__name__} is not allowed (use == != < <= > >= in)")
            result = np.logical_and(result, value)
            left = right
        return result


def _is_text(value) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return isinstance(value, str) or kind in ("O", "U", "S")


def _compare(func, left, right) -> np.ndarray:
    text = [_is_text(v) for v in (left, right)]
    if any(text) and not all(text) and func in (np.equal, np.not_equal):
        # text against a number: never equal (numpy would warn or fail)
        shape = np.shape(left) if np.ndim(left) else np.shape(right)
        return np.full(shape, func is np.not_equal)
    try:
        with np.errstate(invalid="ignore"):
            return func(left, right)
    except TypeError as exc:
        raise SelectError(f"cannot compare text with a number ({exc})") from exc


def select_rows(table: Table, expr: str | None) -> np.ndarray:
    """Return a boolean mask of the rows of ``table`` for which ``expr`` holds.

    ``expr`` is a simple expression over columns, e.g. ``P_FRII > 0.9``,
    ``FR_STATUS == 'ok'``, ``FR_STATUS != 'ok' or FR_UNCERTAINTY > 0.1``,
    ``0.4 < P_FRI < 0.6``, ``FR_STATUS in ('no_image', 'outside_image')``.
    Allowed: column names (`backticks` around names that are not
    identifiers; case is ignored when unambiguous), numbers, 'text',
    ``True``/``False``, comparisons, ``and``/``or``/``not`` (also ``&&``,
    ``||``, ``!`` as in STILTS, and ``&``, ``|``, ``~``), arithmetic and
    parentheses. It is parsed with :mod:`ast` and evaluated node by node;
    nothing else (no calls, attributes, subscripts, names other than
    columns) is allowed. Blank values never satisfy a comparison.

    Raises
    ------
    SelectError
        If the expression is not allowed, names a missing column, or does
        not give one truth value per row.
    """
    n = len(table)
    if expr is None or not str(expr).strip():
        return np.ones(n, dtype=bool)
    expr = str(expr)
    if len(expr) > MAX_EXPRESSION:
        raise SelectError(f"the selection is longer than {MAX_EXPRESSION} characters")
    text, quoted = _translate(expr)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise SelectError(f"cannot parse the selection {expr!r}: {getattr(exc, 'msg', exc)}") from None
    try:
        value = _Evaluator(table, quoted)(tree)
    except RecursionError:
        raise SelectError(f"the selection {expr!r} is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, SelectError):
            raise
        raise SelectError(f"cannot evaluate the selection {expr!r}: {exc}") from exc
    value = np.asarray(value)
    if value.dtype != bool:
        raise SelectError(f"the selection {expr!r} does not say True or False per row (it gives {value.dtype} values)")
    if value.shape not in ((), (n,)):  # e.g. ~() : an empty tuple, negated
        raise SelectError(f"the selection {expr!r} does not give one True or False per row (shape {value.shape})")
    return np.broadcast_to(value, (n,)).copy()


def show_catalog(
    table: Table | str | os.PathLike,
    out: str | os.PathLike,
    images: str | os.PathLike | None = None,
    *,
    options: ClassifyOptions | None = None,
    source: ImageSource | str | None = None,
    select: str | None = None,
    max_images: int = DEFAULT_MAX,
    ncols: int | None = None,
    **fields: Any,
) -> Gallery:
    """Draw the cutouts of a labeled catalog's rows, with label, probability and status, as a PNG.

    Parameters
    ----------
    table : astropy.table.Table or path
        A catalog written by ``frsurvey classify`` (it needs ``FR_STATUS``;
        ``FR_CLASS``, ``P_FRI``, ``P_FRII`` and ``FR_UNCERTAINTY`` are shown
        when present).
    out : path
        The PNG to write.
    images, source, options, **fields :
        The image source and the catalog's options (``ra_col``, ``dec_col``,
        ``format``, ``table_index``), as for :func:`frsurvey.classify_table`:
        the cutouts are cut and prepared again exactly as classification did.
    select : str, optional
        Which rows (see :func:`select_rows`), e.g. ``P_FRII > 0.9``.
    max_images : int
        At most this many panels, the first matching rows in catalog order.
    ncols : int, optional
        Panels per row of the grid.

    Returns
    -------
    Gallery

    Raises
    ------
    SelectError
        If ``select`` is not an allowed expression.
    frsurvey.io.CatalogError
        If the catalog cannot be read, is not labeled, or has no positions.
    """
    opts = ClassifyOptions.build(
        options, images=images, source=None if isinstance(source, ImageSource) else source, **fields
    )
    if not isinstance(table, Table):
        table = read_catalog(table, format=opts.format, table=opts.table_index)
    if "FR_STATUS" not in table.colnames:
        raise CatalogError(
            "this catalog has no FR_STATUS column: it is not a catalog labeled by frsurvey (classify it first)"
        )
    if max_images < 1:
        raise OptionError("--max must be at least 1")
    mask = select_rows(table, select)
    matched = np.flatnonzero(mask)
    rows = [int(r) for r in matched[:max_images]]
    if not isinstance(source, ImageSource):
        source = opts.source.make()
    return draw_rows(
        table,
        rows,
        out,
        source,
        selected=len(matched),
        select=select,
        ncols=ncols,
        ra_col=opts.ra_col,
        dec_col=opts.dec_col,
    )
