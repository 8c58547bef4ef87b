"""The agreement job: do the backends compute the same GAN?"""

from .agreement import CheckReport, PairReport, Row, compare, draw_inputs, run_check
from .tolerances import TOLERANCES, Tolerance, tolerance

__all__ = [
    "CheckReport",
    "PairReport",
    "Row",
    "TOLERANCES",
    "Tolerance",
    "compare",
    "draw_inputs",
    "run_check",
    "tolerance",
]
