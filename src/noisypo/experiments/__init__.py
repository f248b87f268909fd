"""Experiments of the book: whole grids of training runs with stored results.

:mod:`noisypo.experiments.controlled`
    The controlled vMF experiment (Section 4.1 and Appendix D.1 of Im & Li,
    2025): DPO, IPO and SLiC trained by full-batch gradient descent on
    synthetic embeddings, for grids of noise rates, concentrations and
    sample sizes, all trials at once.
:mod:`noisypo.experiments.storage`
    A results folder with one file per finished configuration, a JSON
    sidecar and resumption of interrupted runs.
:mod:`noisypo.experiments.reference`
    The per-trial loop with one ``torch.nn.Linear`` policy per run, used to
    check and to time the batched engine.
:mod:`noisypo.experiments.figures`
    Figure-4-style panels of accuracy against the flip rate.
:mod:`noisypo.experiments.persona`
    The persona experiment (Section 4.2): a fixed backbone with only the two
    answer rows trained, batched over noise rates, losses and seeds, and
    full fine-tuning through TRL's ``DPOTrainer``.
:mod:`noisypo.experiments.robust`
    Noise-robust objectives (cDPO, rDPO, ROPO) beside DPO, IPO and SLiC in
    the controlled and the fixed-backbone settings.
"""
