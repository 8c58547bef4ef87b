"""The agreement job: do the backends compute the same GAN?"""

from .agreement import run_check
from .inputs import draw_inputs
from .measures import compare
from .model import CheckReport, PairReport, Row
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
