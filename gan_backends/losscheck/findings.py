"""What a diagnosis returns: :class:`Diagnosis` (a summary, the findings, the formula fitted) made
of :class:`Finding` (one difference, and the ``--convention`` that accepts it).

Both diagnoses (:mod:`~gan_backends.losscheck.logit_diagnosis`,
:mod:`~gan_backends.losscheck.penalty_diagnosis`) build these, so they live apart from either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Finding:
    kind: str
    text: str
    #: The ``--convention`` that accepts it; None for a bug that no declaration makes right.
    convention: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Diagnosis:
    summary: str
    findings: list[Finding] = field(default_factory=list)
    #: True when the findings account for every failing case.
    explained: bool = False
    formula: str | None = None
    ranges: dict | None = None

    @property
    def conventions(self) -> list[str]:
        return [f.convention for f in self.findings if f.convention]

    def to_json(self) -> dict:
        return {
            "summary": self.summary,
            "findings": [f.to_json() for f in self.findings],
            "explained": self.explained,
            "formula": self.formula,
            "ranges": self.ranges,
            "declare": ",".join(self.conventions) or None,
        }
