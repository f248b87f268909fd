"""The von Mises-Fisher toolkit: exact quantities, sampling and fitting.

This module re-exports the public functions of

* :mod:`noisypo.vmf_special`: log C_d, A_d and the law of w = mu . x;
* :mod:`noisypo.vmf_sampling`: batched torch sampling and the two-class means;
* :mod:`noisypo.vmf_fit`: maximum-likelihood estimation of mu and kappa.
"""

from noisypo.vmf_fit import VMFFit, fit_vmf, kappa_from_mean_resultant
from noisypo.vmf_sampling import sample_vmf, sample_w, two_class_means
from noisypo.vmf_special import (
    log_bessel_iv,
    log_normalizer,
    mean_resultant_length,
    w_cdf,
    w_logpdf,
    w_moments,
    w_pdf,
)

__all__ = [
    "VMFFit",
    "fit_vmf",
    "kappa_from_mean_resultant",
    "log_bessel_iv",
    "log_normalizer",
    "mean_resultant_length",
    "sample_vmf",
    "sample_w",
    "two_class_means",
    "w_cdf",
    "w_logpdf",
    "w_moments",
    "w_pdf",
]
