"""Theory: the model, the ODEs and the Hessian reduction, short enough for a lecture slide."""

import streamlit as st

st.title("Theory")
st.caption("Conventions of the whole dashboard: normalised weights u = w / √d, loss L = ½E[(f − f*)²], time t = steps / d.")
st.markdown("The derivations, with numbered equations and references, are in `docs/theory.md` of the "
            "source tree (next to `app.py`); this page is the lecture-slide summary.")

st.subheader("1. Model and overlaps")
st.markdown("Gaussian inputs, a student and a teacher two-layer ReLU network with second-layer weights fixed to one:")
st.latex(r"x \sim \mathcal N(0, I_d),\quad f(x) = \sum_{k=1}^{K} \sigma\!\Big(\tfrac{w_k\cdot x}{\sqrt d}\Big),\quad "
         r"f^*(x) = \sum_{m=1}^{M} \sigma\!\Big(\tfrac{w^*_m\cdot x}{\sqrt d}\Big),\quad \sigma(z) = \max(z, 0)")
st.markdown("The loss depends on the weights only through the overlaps (order parameters):")
st.latex(r"Q = \tfrac{1}{d} W W^\top,\qquad R = \tfrac{1}{d} W W^{*\top},\qquad T = \tfrac{1}{d} W^* W^{*\top}")
st.latex(r"L = \tfrac12 \sum_{k,l} \kappa(Q_{kk}, Q_{ll}, Q_{kl}) - \sum_{k,m} \kappa(Q_{kk}, T_{mm}, R_{km}) "
         r"+ \tfrac12 \sum_{m,n} \kappa(T_{mm}, T_{nn}, T_{mn})")
st.markdown("with the arc-cosine kernel of Cho & Saul, for a Gaussian pair of variances a, b and covariance c:")
st.latex(r"\kappa(a, b, c) = \mathbb E[\sigma(u)\sigma(v)] = \frac{\sqrt{ab - c^2} + c\,(\pi - \theta)}{2\pi},"
         r"\qquad \cos\theta = \frac{c}{\sqrt{ab}}")

st.subheader("2. One-pass SGD and its ODEs")
st.markdown("One fresh sample per step, labels $y = f^*(x) + \\sqrt{\\Delta}\\,\\xi$, pre-activations "
            "$\\lambda_k = u_k\\cdot x$, $\\nu_m = u^*_m\\cdot x$:")
st.latex(r"w_k \leftarrow w_k - \frac{\eta}{\sqrt d}\,\big(f(x) - y\big)\,\sigma'(\lambda_k)\,x")
st.markdown("As $d \\to \\infty$ with $t$ = steps / d the overlaps follow deterministic ODEs (Saad & Solla; Goldt et al.):")
st.latex(r"\frac{dR_{km}}{dt} = -\eta\,\mathbb E\big[(f - y)\,\sigma'(\lambda_k)\,\nu_m\big]")
st.latex(r"\frac{dQ_{kl}}{dt} = -\eta\,\mathbb E\big[(f - y)"
         r"\big(\sigma'(\lambda_k)\lambda_l + \sigma'(\lambda_l)\lambda_k\big)\big]"
         r" + \eta^2\,\mathbb E\big[\sigma'(\lambda_k)\,\sigma'(\lambda_l)\,(f - y)^2\big]")
st.markdown("The η term is gradient flow on L; its fixed points are the critical points of L. The η² term "
            "(a four-point Gaussian integral, computed exactly) is the finite-learning-rate correction; "
            "it moves or removes spurious fixed points, and too large an η makes the dynamics diverge.")

st.subheader("3. Critical points and the exact Hessian")
st.markdown("The gradient lies in the span of the units, so critical points in $\\mathbb R^{Kd}$ are zeros of the "
            "flow in (Q, R):")
st.latex(r"\nabla_{u_k} L = \sum_l \alpha_{kl}\, u_l + \sum_m \beta_{km}\, u^*_m,\quad "
         r"\alpha_{kl} = P(\lambda_k > 0, \lambda_l > 0) + \delta_{kl}\,\mathbb E\big[(f - f^*)\,\delta(\lambda_k)\big],"
         r"\quad \beta_{km} = -P(\lambda_k > 0, \nu_m > 0)")
st.markdown("With $r = \\dim \\operatorname{span}\\{u_k, u^*_m\\}$ the Hessian splits into a block on the span and a "
            "bulk on its complement:")
st.latex(r"\nabla^2 L = H_{\mathrm{span}} \oplus \big(\alpha \otimes I_{d - r}\big)")
st.markdown("So for every d the spectrum is K r outlier eigenvalues (of the K r × K r block) plus the K eigenvalues "
            "of α, each with multiplicity d − r. A minimum needs both parts ≥ 0; the index of a saddle counts "
            "negative eigenvalues with multiplicity. At the global minimum of an orthonormal teacher, "
            "1/4 − 1/(2π) appears with multiplicity K(K − 1)/2 for every K.")

st.subheader("4. Symmetries and families")
st.markdown(
    "- Permuting student units (and teacher units that leave T invariant) maps critical points to critical points: "
    "a catalogue lists each orbit once, with its size.\n"
    "- ReLU is positively homogeneous: two parallel students a·u and (1 − a)·u compute the same function, so for "
    "K > M minima come in flat valleys (exact zero eigenvalues).\n"
    "- For K = M and an orthonormal teacher, gradient descent from random starts ends in spurious minima with "
    "a probability that grows with K; they form symmetry families, the lowest one leaving one teacher unit unrecovered. "
    "One more student unit makes them rarer, not absent (Safran & Shamir: 934 to 491 runs in 1000 at M = 19).\n"
    "- A point's **family** is its isotropy type: the orbits of the students and teachers under the symmetries that "
    "fix it, with each orbit's role read from exact equalities and signs (a student's partner is the teacher it is "
    "uniquely most aligned with, if that teacher has no better student; a teacher with no partner is missed, with two "
    "split; an unpartnered student pointing away from one teacher is opposing). No cosine cut-off: overlaps of a "
    "Newton-polished point are equal to 1e-10 or differ by more than 1e-3, and the resolution 1e-5 sits in that gap. "
    "Names do not depend on K: Safran & Shamir's family is *type A: one teacher missed, one student opposing* "
    "(isotropy Δ(S_{K−1} × S_1)), a saddle up to K = 5 and a minimum from K = 6.\n"
    "- Splitting a unit u into (a u, (1 − a) u) embeds every critical point of width K in width K + 1 at the same "
    "loss. A type-A minimum at K = M = 8 becomes a saddle: split a recovered student and gradient flow escapes to "
    "the global minimum; split the opposing one and it escapes to a spurious minimum of width 9 (loss 0.02056)."
)

st.subheader("References")
st.markdown(
    "- D. Saad, S. A. Solla, *On-line learning in soft committee machines*, Phys. Rev. E 52, 4225 (1995).\n"
    "- S. Goldt, M. S. Advani, A. M. Saxe, F. Krzakala, L. Zdeborová, *Dynamics of stochastic gradient descent for "
    "two-layer neural networks in the teacher-student setup*, NeurIPS 2019.\n"
    "- I. Safran, O. Shamir, *Spurious local minima are common in two-layer ReLU neural networks*, ICML 2018.\n"
    "- Y. Arjevani, M. Field, *Analytic characterization of the Hessian in shallow ReLU models: a tale of symmetry*, "
    "NeurIPS 2020; *Symmetry & critical points for a model shallow neural network*, Physica D 2021; "
    "*Annihilation of spurious minima in two-layer ReLU networks*, NeurIPS 2022.\n"
    "- Huang, Loureiro & Sarao Mannelli, arXiv:2604.09412 (2026): the setting of this dashboard.\n"
    "- Y. Cho, L. K. Saul, *Kernel methods for deep learning*, NIPS 2009 (the arc-cosine kernel)."
)
