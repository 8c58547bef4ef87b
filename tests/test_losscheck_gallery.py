"""Every deliberately wrong loss of tests/losscheck_gallery/ is caught, in each framework, and
gets the diagnosis a reader of its source would give (asserted on the finding's kind, its
declaration and its words); declaring the convention it follows turns it into a pass."""

from __future__ import annotations

import importlib

import pytest

from gan_backends.losscheck import check_loss

#: entry -> (role, loss, inputs, finding kind, declaration that accepts it (None: a bug), words in the summary)
NS, LS, GP = "non_saturating", "least_squares", "wgan_gp"
GALLERY: dict[str, tuple[str, str, str, str, str | None, str]] = {
    "d_sum": ("d", NS, "logits", "reduction", "reduction=sum", "sums over the logits"),
    "d_half": ("d", NS, "logits", "scale", "scale=0.5", "halved"),
    "d_one_sided_smoothing": ("d", NS, "logits", "label_smoothing", "real_target=0.9", "one-sided label smoothing"),
    "d_tfgan_smoothing": ("d", NS, "logits", "label_smoothing", "real_target=0.875", "label smoothing 0.25 toward ½"),
    "d_smoothing_both": ("d", NS, "logits", "label_smoothing", "label_smoothing_both=0.2", "toward ½ on both labels"),
    "d_probabilities": ("d", NS, "probabilities", "probabilities", "probabilities=true", "only inside"),
    "d_ls_no_half": ("d", LS, "logits", "scale", "scale=2", "without the ½ factor"),
    "d_ls_targets": ("d", LS, "logits", "targets", "a=-1,b=1", "eq. 8"),
    "g_minimax_constant": ("g", "minimax", "logits", "offset", "offset=1.38629", "log 4"),
    "g_non_saturating": ("g", "minimax", "logits", "loss", None, "this is the non_saturating loss, not minimax"),
    "d_patch_sum": ("d", NS, "logits", "patch_reduction", None, "sums over the H·W positions"),
    "d_swapped": ("d", "hinge", "logits", "swapped", None, "the real and fake logits are swapped"),
    "gp_norm_axis": ("penalty", GP, "critic", "norm_axes", None, "per-pixel norm"),
    "gp_no_eps": ("penalty", GP, "critic", "norm_at_zero", None, "no epsilon under its square root"),
    "gp_one_sided": ("penalty", GP, "critic", "one_sided", "one_sided=true", "one-sided"),
    "gp_unweighted": ("penalty", GP, "critic", "penalty_weight", "penalty_weight=1", "without its weight"),
    "r1_mean_over_pixels": ("penalty", "r1", "critic", "element_mean", None, "averages g² over each sample's values"),
    "gp_no_create_graph": ("penalty", GP, "critic", "error", None, "create_graph=True"),
    "d_ralsgan_halved": ("d", "ralsgan", "logits", "scale", "scale=0.5", "RaLSGAN author's code"),
    "d_rasgan_detached": ("d", "rasgan", "logits", "detached_average", None, "BasicSR's ESRGAN"),
    "g_rasgan_fake_term_only": ("g", "rasgan", "logits", "g_real_term", None, "only its fake-side term"),
    "d_rasgan_paired": ("d", "rasgan", "logits", "loss", None, "pairs each real logit with the fake logit"),
    "d_rahinge_sum": ("d", "rahinge", "logits", "reduction", "reduction=sum", "sums over the logits"),
    "r2_at_real": ("penalty", "r2", "critic", "site", None, "this is r1"),
    "r3gan_averaged": ("penalty", "r3gan", "critic", "penalty_weight", "penalty_weight=5", "R1 and R2 averaged"),
}  # fmt: skip

#: Where a framework reads a number the way its user would not have to: the plateau of its saturated log.
PLATEAU = {"torch": "log clamped at -100", "tensorflow": "clipped at 1e-07", "jax": "clipped at 1e-07"}


def _module(framework: str):
    return importlib.import_module(f"tests.losscheck_gallery.{framework}_losses")


@pytest.mark.parametrize("entry", list(GALLERY))
def test_gallery_bug_is_caught_and_diagnosed(framework: str, entry: str) -> None:
    module = _module(framework)
    if not hasattr(module, entry):
        pytest.skip(f"{entry} is a {', '.join(n for n in ('torch',) if n != framework)}-only mistake")
    role, loss, inputs, kind, declare, words = GALLERY[entry]
    report = check_loss(
        getattr(module, entry), loss, role=role, framework=framework, inputs=inputs if role != "penalty" else "logits"
    )
    assert not report.passed, report.text()
    diagnosis = report.diagnosis
    assert diagnosis is not None
    kinds = [f.kind for f in diagnosis.findings]
    assert kind in kinds, report.text()
    text = diagnosis.summary + " " + " ".join(f.text for f in diagnosis.findings)
    assert words in text, report.text()
    finding = next(f for f in diagnosis.findings if f.kind == kind)
    assert finding.convention == declare, report.text()
    if entry == "d_probabilities":
        assert PLATEAU[framework] in text, report.text()
    if declare is not None and kind != "label_smoothing":
        assert diagnosis.explained, report.text()
        declared = dict(item.split("=", 1) for c in diagnosis.conventions for item in c.split(","))
        again = check_loss(
            getattr(module, entry),
            loss,
            role=role,
            framework=framework,
            inputs=inputs if role != "penalty" else "logits",
            conventions=declared,
        )
        assert again.passed, again.text()
