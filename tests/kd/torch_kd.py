#!/usr/bin/python3
"""Parity of ackd's KD losses with the same formulas written in PyTorch.

Reads what test_kd_losses wrote (per case: its options, the inputs, ackd's
terms, gradients and the method's parameters), recomputes every term in float64
PyTorch from the papers' formulas (docs/KD.md) with autograd for the gradients,
and compares. A tensor agrees when max |ackd - torch| <= 1e-4 * max |torch|
(ackd's inputs are float32 and its outputs are rounded to float32; 1e-4 is far
above that and far below any wrong term). Defaults are written here again, on
purpose: a changed default in C fails this test."""
import math
import pathlib
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

TOL = 1e-4
torch.set_default_dtype(torch.float64)


def kl_rows(p_logits_t, q_logits_s, T):
    """KL(softmax(t/T) || softmax(s/T)) per row."""
    lp = F.log_softmax(p_logits_t / T, dim=1)
    lq = F.log_softmax(q_logits_s / T, dim=1)
    return (lp.exp() * (lp - lq)).sum(1)


def coral(s, t):
    d = s.shape[1]
    cs = (s - s.mean(0, keepdim=True)).t() @ (s - s.mean(0, keepdim=True))
    ct = (t - t.mean(0, keepdim=True)).t() @ (t - t.mean(0, keepdim=True))
    return ((cs - ct) ** 2).mean() / (4 * d)


def token_weights(z, wq, wk, heads):
    """z (n, N, C) -> (n, N) SKA weights: mean over heads of the column sums of the plans."""
    n, N, C = z.shape
    d = C // heads
    q = (z @ wq.t()).reshape(n, N, heads, d).transpose(1, 2)
    k = (z @ wk.t()).reshape(n, N, heads, d).transpose(1, 2)
    plan = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(d), dim=-1)  # (n, H, N, N)
    return plan.mean(2).mean(1) * N


def rescaled(z, w):
    m = z.mean(1)
    u = (w.unsqueeze(2) * z).mean(1)
    s = (m.pow(2).sum(1) / u.pow(2).sum(1)).sqrt()
    return s[:, None, None] * w.unsqueeze(2) * z


def sinkhorn_value(a, b, C, eps, iters):
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(iters):
        f = -eps * torch.logsumexp(b.log()[None, :] + (g[None, :] - C) / eps, dim=1)
        g = -eps * torch.logsumexp(a.log()[:, None] + (f[:, None] - C) / eps, dim=0)
    return (f * a).sum() + (g * b).sum()


def ska(opts, zs, zt, es, et, P):
    heads = 8
    Cs, Ct = zs.shape[2], zt.shape[2]
    # ackd stores each tensor flat; (out, in) is PyTorch's shape
    # a side of one token has a plan of 1 whatever Q and K are, and ackd declares no weights for it:
    # any weights must then give the same loss, so random ones stand in
    def attention(side, C):
        w = [P.get(f"ska.{side}_attention.{x}_proj.weight") for x in "qk"]
        if w[0] is None:
            g = torch.Generator().manual_seed(5)
            return [torch.randn(C, C, generator=g, dtype=torch.float64) for _ in "qk"]
        return [x.reshape(C, C) for x in w]

    wq_s, wk_s = attention("student", Cs)
    wq_t, wk_t = attention("teacher", Ct)
    ws, wt = token_weights(zs, wq_s, wk_s, heads), token_weights(zt, wq_t, wk_t, heads)
    proj = P.get("ska.token_projection.weight")
    proj = proj.reshape(-1, Cs) if proj is not None else None
    if "sinkhorn" in opts:
        it = int(opts.split("-ska_sinkhorn_it")[1].split()[0]) if "-ska_sinkhorn_it" in opts else 100
        total = 0.0
        for b in range(zs.shape[0]):
            x = zs[b] @ proj.t() if proj is not None else zs[b]
            C = 2 - 2 * F.normalize(x, dim=1) @ F.normalize(zt[b], dim=1).t()
            total = total + sinkhorn_value(ws[b] / zs.shape[1], wt[b] / zt.shape[1], C, 0.1, it)
        l1 = total / zs.shape[0]
    else:
        xs = rescaled(zs, ws).reshape(-1, zs.shape[2])
        xt = rescaled(zt, wt).reshape(-1, zt.shape[2])
        if proj is not None:
            xs = xs @ proj.t()
        l1 = coral(xs, xt)
    pe = P.get("ska.embedding_projection.weight")
    pe = pe.reshape(-1, es.shape[1]) if pe is not None else None
    l2 = coral(es @ pe.t() if pe is not None else es, et)
    return l1 + l2


def standardise(z):
    return (z - z.mean(1, keepdim=True)) / (1e-7 + z.std(1, keepdim=True))


def over_positive_mean(d):
    return d / d[d > 0].mean()


def rkd_terms(s, t):
    """RKD's distance and angle terms, unweighted."""
    def pdist(e):
        eye = torch.eye(e.shape[0])  # the diagonal is 0 and carries no gradient
        return ((e[:, None, :] - e[None, :, :]).pow(2).sum(2) + eye).sqrt() * (1 - eye)

    def angles(e):
        diff = e[None, :, :] - e[:, None, :]  # [a, b] = e_b - e_a
        u = F.normalize(diff, p=2, dim=2)
        return torch.bmm(u, u.transpose(1, 2)).reshape(-1)

    return (F.smooth_l1_loss(over_positive_mean(pdist(s)), over_positive_mean(pdist(t))),
            F.smooth_l1_loss(angles(s), angles(t)))


def rkd(s, t):
    distance, angle = rkd_terms(s, t)
    return 25 * distance + 50 * angle


def to_poincare(v, c):
    """hyptorch's ToPoincare (no clip_r, riemannian=False): project(expmap0(v)); expmap0 floors
    |v| at 1e-5, project keeps the norm at most (1 - 1e-3)/sqrt(c)."""
    sc = math.sqrt(c)
    r = v.norm(dim=1, keepdim=True).clamp_min(1e-5)
    x = torch.tanh(sc * r) * v / (sc * r)
    norm = x.norm(dim=1, keepdim=True).clamp_min(1e-5)
    limit = (1 - 1e-3) / sc
    return torch.where(norm > limit, x / norm * limit, x)


def poincare_matrix(x, y, c, same):
    """[i, j] = 2/sqrt(c) artanh(sqrt(c) |(-x_i) (+)_c y_j|), Mobius addition written out as in
    hyptorch (1e-5 added to its denominator, artanh's argument clamped at 1 - 1e-5). The clamp
    here is torch.clamp, which passes no gradient beyond it, as ackd; hyptorch's own Artanh passes
    1/(1 - u^2) there (docs/KD.md). Within one set (same) the diagonal is 0."""
    a, b = -x[:, None, :], y[None, :, :]
    ab, a2, b2 = (a * b).sum(2, keepdim=True), (a * a).sum(2, keepdim=True), (b * b).sum(2, keepdim=True)
    m = ((1 + 2 * c * ab + c * b2) * a + (1 - c * a2) * b) / (1 + 2 * c * ab + c * c * a2 * b2 + 1e-5)
    eye = torch.eye(x.shape[0]) if same else torch.zeros(x.shape[0], y.shape[0])
    norm = ((m * m).sum(2) + eye).sqrt() * (1 - eye)  # no gradient through the zero diagonal
    return 2 / math.sqrt(c) * torch.atanh(torch.clamp(math.sqrt(c) * norm, max=1 - 1e-5))


def distilvpr(words, e, et, P):
    """DistilVPR as the authors' code computes it (selfagent/rkdg.py, compute_distil_loss.py):
    RKD-G on the raw rows, the three st2ss terms on L2-normalised ones, the student-teacher
    matrices detached. The st2ss matrices are built as there: the Euclidean one by broadcasting,
    [i, j] = |s_j - t_i|, the cosine one divided by the norms (of unit rows), the Poincare one by
    dist_matrix(s, t), [i, j] = d(s_i, t_j).
    Tolerance: ackd and this reference evaluate the same double expressions from the same float32
    inputs, so they differ by double rounding amplified by the conditioning, at worst 1/(1 - u^2)
    for artanh's argument u and its square for the gradient: the test's u stay 7e-7 below the clamp
    at 1 - 1e-5, which bounds the amplification by 7e4 (value) and 5e9 (gradient), relative errors
    of 1e-11 and 1e-6 after 2e-16 rounding, under the 1e-4 tolerance; the float32 rounding of
    ackd's outputs adds 6e-8."""
    c = option(words, "-distilvpr_curvature", 0.1)
    if "distilvpr.student_projection.weight" in P:
        e = e @ P["distilvpr.student_projection.weight"].reshape(et.shape[1], -1).t()
    distance, angle = rkd_terms(e, et)
    gs = poincare_matrix(to_poincare(e, c), to_poincare(e, c), c, True)
    gt = poincare_matrix(to_poincare(et, c), to_poincare(et, c), c, True)
    geodesic = F.smooth_l1_loss(over_positive_mean(gs), over_positive_mean(gt.detach()))

    s, t = F.normalize(e, dim=1), F.normalize(et, dim=1)
    eye = torch.eye(s.shape[0])
    dist_ss = ((s[None, :, :] - s[:, None, :]).pow(2).sum(2) + eye).sqrt() * (1 - eye)
    dist_st = (s[None, :, :] - t[:, None, :]).norm(dim=2)
    ns, nt = s.norm(dim=1, keepdim=True), t.norm(dim=1, keepdim=True)
    cos_ss, cos_st = s @ s.t() / (ns @ ns.t()), s @ t.t() / (ns @ nt.t())
    bs, bt = to_poincare(s, c), to_poincare(t, c)
    st2ss = (F.mse_loss(dist_ss, dist_st.detach()) + F.mse_loss(cos_ss, cos_st.detach())
             + F.mse_loss(poincare_matrix(bs, bs, c, True), poincare_matrix(bs, bt, c, False).detach()))
    return (option(words, "-distilvpr_rkdg_weight", 0.1) * (distance + angle + geodesic)
            + option(words, "-distilvpr_st2ss_weight", 0.1) * st2ss)


def at_map(z):
    return F.normalize(z.pow(2).mean(2), dim=1)


def dkd(zs, zt, y, epoch, w, n):
    T, alpha, beta, warmup = 4.0, 1.0, 8.0, 20
    gt = F.one_hot(y, zs.shape[1]).double()
    ps, pt = F.softmax(zs / T, 1), F.softmax(zt / T, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1)
    lpt2 = F.log_softmax(zt / T - 1000 * gt, 1)
    lps2 = F.log_softmax(zs / T - 1000 * gt, 1)
    nckd = (lpt2.exp() * (lpt2 - lps2)).sum(1)
    ramp = min((epoch + 1) / warmup, 1.0)
    return ramp * T * T * ((alpha * tckd + beta * nckd) * w).sum() / n


def option(words, name, default):
    return float(words[words.index(name) + 1]) if name in words else default


def crd(words, g, e, et, w, sel, n, P):
    """CRD against the memory before the step (positive = the sample's own row, then
    ackd's drawn negatives); returns the term and the memory after the momentum update."""
    d, tau, beta, mu = int(option(words, "-crd_dim", 128)), option(words, "-crd_tau", 0.07), 0.8, 0.5
    N = np.asarray(g["state_before"], dtype=np.float64).size // (2 * d)
    mem = torch.tensor(np.asarray(g["state_before"], dtype=np.float64)).reshape(2, N, d)
    neg = torch.tensor(np.asarray(g["negatives"], dtype=np.float64)).long().reshape(e.shape[0], -1)
    idx = torch.tensor(np.asarray(g["samples"], dtype=np.float64)).long()
    s_ = F.normalize(e @ P["crd.embed_s.linear.weight"].reshape(d, -1).t() + P["crd.embed_s.linear.bias"], dim=1)
    t_ = F.normalize(et @ P["crd.embed_t.linear.weight"].reshape(d, -1).t() + P["crd.embed_t.linear.bias"], dim=1)
    rows = torch.cat([idx[:, None], neg], 1)
    target = torch.zeros(e.shape[0], dtype=torch.long)
    ls = F.cross_entropy(torch.einsum("bd,bkd->bk", s_, mem[1][rows]) / tau, target, reduction="none")
    lt = F.cross_entropy(torch.einsum("bd,bkd->bk", t_, mem[0][rows]) / tau, target, reduction="none")
    value = beta * (w * (ls + lt))[sel].sum() / n
    after = mem.clone()
    for i in torch.nonzero(sel)[:, 0].tolist():
        for side, x in ((0, s_), (1, t_)):
            after[side, idx[i]] = F.normalize(mu * after[side, idx[i]] + (1 - mu) * x[i].detach(), dim=0)
    return value, after


def kendall(a, b):
    """Kendall's tau-a per row (ties count 0)."""
    sa = torch.sign(a[:, :, None] - a[:, None, :])
    sb = torch.sign(b[:, :, None] - b[:, None, :])
    m = a.shape[1]
    return (sa * sb).sum((1, 2)) / 2 / (m * (m - 1) / 2)


def c2kd(words, z, zt, e, et, y, w, sel, n, P):
    T = option(words, "-c2kd_temperature", 4.0)
    K = z.shape[1]
    ps = e @ P["c2kd.student_proxy.weight"].reshape(K, -1).t() + P["c2kd.student_proxy.bias"]
    pt = et @ P["c2kd.teacher_proxy.weight"].reshape(K, -1).t() + P["c2kd.teacher_proxy.bias"]
    keep = torch.ones(K, K, dtype=torch.bool)
    keep[torch.arange(K), torch.arange(K)] = False
    nt = lambda x: x[keep[y]].reshape(-1, K - 1)  # the non-target classes, in order
    inherit = kl_rows(z.detach(), ps, T) + kl_rows(zt, pt, T)
    f = (kendall(nt(ps).detach(), nt(pt).detach()) > 0).double()
    cross = kl_rows(nt(pt).detach(), nt(ps), T) + kl_rows(nt(ps).detach(), nt(pt), T) + kl_rows(nt(pt).detach(), nt(z), T)
    return T * T * (w * (inherit + f * cross))[sel].sum() / n


def mnf(words, tok, tt, e, et, sel, P):
    """MNF + CSC on the samples with a teacher: gate on the teacher's features,
    cross-attention from the student's, triplet (batch-all) and calibrated InfoNCE."""
    margin, theta = option(words, "-mnf_margin", 0.2), option(words, "-mnf_theta", 1.1)
    heads = int(option(words, "-mnf_heads", 2))
    if "-mnf_feature" in words and words[words.index("-mnf_feature") + 1] == "embedding":
        v, a = e[sel][:, None, :], et[sel][:, None, :]
    else:
        v, a = tok[sel], tt[sel]
    n, C = a.shape[0], a.shape[2]
    if "mnf.student_projection.weight" in P:
        v = v @ P["mnf.student_projection.weight"].reshape(C, -1).t()
    vbar = v.mean(1)
    x = torch.cat([a, vbar[:, None, :].expand(-1, a.shape[1], -1)], 2).reshape(-1, 2 * C)
    h = x @ P["mnf.gate.fc1.weight"].reshape(-1, 2 * C).t()
    h = F.batch_norm(h, None, None, P["mnf.gate.bn.weight"], P["mnf.gate.bn.bias"], training=True, eps=1e-5)
    b2 = P["mnf.gate.fc2.bias"]
    gate = torch.sigmoid(F.relu(h) @ P["mnf.gate.fc2.weight"].reshape(C, -1).t() + b2)
    ah = gate.reshape(a.shape) * a
    W = {x: P[f"mnf.attention.{x}_proj.weight"].reshape(C, C) for x in ("q", "k", "v", "out")}
    # PyTorch's own multi-head attention (sequence-first), separate projections, no bias
    out, _ = F.multi_head_attention_forward(
        v.transpose(0, 1), ah.transpose(0, 1), ah.transpose(0, 1), C, heads, None, None, None, None, False, 0.0,
        W["out"], None, training=False, need_weights=False, use_separate_proj_weight=True, q_proj_weight=W["q"],
        k_proj_weight=W["k"], v_proj_weight=W["v"])
    u = F.normalize(out.mean(0), dim=1)
    s = F.normalize(vbar, dim=1)
    d = torch.cdist(s, u)
    off = ~torch.eye(n, dtype=torch.bool)
    triplet = F.relu(margin + d.diagonal()[:, None] - d)[off].mean()
    cos = s @ u.t()
    csc = F.cross_entropy(cos / (cos.detach() + theta), torch.arange(n))
    return option(words, "-mnf_triplet_weight", 1.0) * triplet + option(words, "-mnf_csc_weight", 1.0) * csc


LOGIT_METHODS = ("kd", "logits", "dkd", "ctkd", "lskd")


def case(g):
    opts = g.attrs["options"].decode() if isinstance(g.attrs["options"], bytes) else g.attrs["options"]
    words = opts.split()
    method = words[words.index("-kd_method") + 1]
    sembridge = "-sembridge" in words
    epoch, n = int(g.attrs["epoch"]), int(g.attrs["global_batch"])
    T = lambda name: torch.tensor(np.asarray(g[name], dtype=np.float64), requires_grad=True)
    zs, es, ts = T("student_logits"), T("student_embedding"), T("student_tokens")
    zt = torch.tensor(np.asarray(g["teacher_logits"], dtype=np.float64)).reshape(zs.shape[0], -1)
    et = torch.tensor(np.asarray(g["teacher_embedding"], dtype=np.float64)).reshape(es.shape[0], -1)
    tt = torch.tensor(np.asarray(g["teacher_tokens"], dtype=np.float64))[:, 0]
    y = torch.tensor(np.asarray(g["labels"], dtype=np.float64)).long()
    w = torch.tensor(np.asarray(g["weight"], dtype=np.float64))
    P = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in g["params"].items()}
    B = zs.shape[0]
    z, e, tok = zs.reshape(B, -1), es.reshape(B, -1), ts[:, 0]
    if "-kd_teacher_multilabel" in words:
        zt_soft = F.logsigmoid(zt)
    else:
        zt_soft = zt
    if "-kd_reliability" in words:
        r = torch.sigmoid(zt).gather(1, y[:, None])[:, 0] if "-kd_teacher_multilabel" in words else \
            F.softmax(zt, 1).gather(1, y[:, None])[:, 0]
        w = w * r
    sel = w > 0
    share = B / n

    memory = None
    ce_rows = F.cross_entropy(z, y, reduction="none")
    # Partial class overlap (docs/KD.md): the logit methods see the shared classes only, the
    # student's one-sided classes and the samples labelled with one of them drop out of the term.
    z_full, y_full, w_full = z, y, w
    if "teacher_classes" in g.attrs and method in LOGIT_METHODS and "-kd_shared_classes" not in words:
        mask = g.attrs["teacher_classes"]
        shared = [k for k, c in enumerate(mask.decode() if isinstance(mask, bytes) else mask) if c == "1"]
        index = {c: j for j, c in enumerate(shared)}
        z, zt_soft = z[:, shared], zt_soft[:, shared]
        w = torch.where(torch.tensor([int(c) in index for c in y]), w, torch.zeros_like(w))
        y = torch.tensor([index.get(int(c), 0) for c in y])
    terms, weights = {}, {}
    if method == "kd":
        Tk = 3.0 if sembridge else 4.0
        f = 1.0 if sembridge else Tk * Tk
        terms["kd"] = f * (w * kl_rows(zt_soft, z, Tk)).sum() / n
        weights = {"ce": 0.1, "kd": 0.9}
    elif method == "logits":
        terms["kd"] = 0.01 * (w * ((z - zt_soft) ** 2).mean(1)).sum() / n
    elif method == "fitnet":
        br = P["fitnet.regressor.bias"]
        Wr = P["fitnet.regressor.weight"].reshape(br.shape[0], -1)
        if "embedding" in words:
            terms["kd"] = 100 * (w * ((e @ Wr.t() + br - et) ** 2).mean(1)).sum() / n
        else:
            terms["kd"] = 100 * (w * ((tok @ Wr.t() + br - tt) ** 2).mean((1, 2))).sum() / n
    elif method == "at":
        terms["kd"] = 1000 * (w * ((at_map(tok) - at_map(tt)) ** 2).mean(1)).sum() / n
    elif method == "rkd":
        terms["kd"] = share * rkd(e[sel], et[sel])
    elif method == "dkd":
        terms["kd"] = dkd(z, zt_soft, y, epoch, w, n)
    elif method == "ctkd":
        theta = P["ctkd.global_temperature"]
        u0 = (4.0 - 1.0) / 20.0
        Tc = 1.0 + 20.0 * torch.sigmoid(theta + math.log(u0 / (1 - u0)))
        terms["kd"] = (Tc * Tc * w * kl_rows(zt_soft, z, Tc)).sum() / n
        weights = {"ce": 0.1, "kd": 0.9}
    elif method == "lskd":
        terms["kd"] = 9.0 * (w * kl_rows(standardise(zt_soft), standardise(z), 3.0)).sum() / n
        weights = {"ce": 0.1, "kd": 0.9}
    elif method == "clip":
        dim = int(words[words.index("-clip_dim") + 1])
        Ps = P["clip.student_projection.weight"].reshape(dim, -1)
        Pt = P["clip.teacher_projection.weight"].reshape(dim, -1)
        s_, t_ = F.normalize(e[sel] @ Ps.t(), dim=1), F.normalize(et[sel] @ Pt.t(), dim=1)
        L = s_ @ t_.t() / 0.07
        target = torch.arange(L.shape[0])
        nce = (F.cross_entropy(L, target) + F.cross_entropy(L.t(), target)) / 2
        cs, ct = F.normalize(e[sel], dim=1), F.normalize(et[sel], dim=1)
        relation = ((cs @ cs.t() - ct @ ct.t()) ** 2).mean()
        terms["kd"] = share * (nce + relation)
    elif method == "c2kd":
        terms["kd"] = c2kd(words, z, zt_soft, e, et, y, w, sel, n, P)
    elif method == "crd":
        terms["kd"], memory = crd(words, g, e, et, w, sel, n, P)
    elif method == "mnf":
        terms["kd"] = share * mnf(words, tok, tt, e, et, sel, P)
    elif method == "distilvpr":
        terms["kd"] = share * distilvpr(words, e[sel], et[sel], P)
    elif method != "none":
        raise SystemExit(f"no reference for method {method}")
    # A sample the method gives no teacher of its class learns from its label at weight 1 (docs/KD.md).
    on_shared = z.shape[1] < z_full.shape[1]
    if on_shared and z.shape[1] < 2:  # both conditionals are the point mass: the term is 0
        terms["kd"] = torch.zeros(())
    # with one shared class the term is 0 and nobody is taught
    taught = w > 0 if not on_shared or z.shape[1] >= 2 else torch.zeros_like(w, dtype=torch.bool)
    on_shared = on_shared and z.shape[1] >= 2
    z, y, w = z_full, y_full, w_full
    if method != "none":
        terms["ce"] = (ce_rows * taught).sum() / n
        terms["ce_unmatched"] = (ce_rows * ~taught).sum() / n
        if on_shared:  # -log P(S) of the taught samples, at 1 - (the method's CE weight)
            terms["shared_mass"] = ((torch.logsumexp(z, 1) - torch.logsumexp(z[:, shared], 1)) * taught).sum() / n
    else:
        terms["ce"] = ce_rows.sum() / n
    if method != "none":
        weights.setdefault("ce", 1.0)
        weights.setdefault("kd", 1.0)
    else:
        weights["ce"] = 1.0
    if sembridge:
        weights = {"ce": 0.3, "kd": 0.4, "ska": 0.003}
        terms["ska"] = share * ska(opts, tok[sel], tt[sel], e[sel], et[sel], P)
    hint_weight = float(option(words, "-kd_hint_weight", 0))
    if hint_weight > 0:  # FitNet's term with its own regressor, on the taught samples, beside the method's
        bh = P["hint.regressor.bias"]
        Wh = P["hint.regressor.weight"].reshape(bh.shape[0], -1)
        x, xt = (e, et) if "embedding" in words else (tok, tt)
        terms["hint"] = (w_full * ((x @ Wh.t() + bh - xt) ** 2).mean(tuple(range(1, x.dim())))).sum() / n
        weights["hint"] = hint_weight
    if "ce_unmatched" in terms:
        # A sample without a teacher gets a taught sample's whole label weight: CE's, plus the KD
        # weight on the label's gradient scale (1 with T², 1/T² without; 0 for terms added to CE).
        label_share = {"kd": 1.0 / 9.0 if sembridge else 1.0, "ctkd": 1.0, "lskd": 1.0}.get(method, 0.0)
        weights["ce_unmatched"] = weights["ce"] + weights["kd"] * label_share
    if "shared_mass" in terms:
        weights["shared_mass"] = max(weights["ce_unmatched"] - weights["ce"], 0.0)
    total = sum(weights[k] * terms[k] for k in terms)
    total.backward()
    # CTKD's temperature receives the reversed gradient: lambda = 1 at this epoch
    grads = {k: (-v.grad if k.startswith("ctkd.") else v.grad) for k, v in P.items()}
    zero = lambda x: x.grad if x.grad is not None else torch.zeros_like(x)
    return terms, weights, total, zero(zs), zero(es), zero(ts), grads, memory


def numpy_kd_partial(g, check):
    """KD on the shared sub-simplex in closed form, without autograd: the gradient of
    0.1 CE + 0.9 T^2 KL(p_S || q_S) / n is (softmax(z) - onehot) 0.1 / n on every class plus
    0.9 T w (q_S - p_S) / n on the shared classes S, zero on the one-sided ones, plus 0.9 times the
    gradient of -log P(S) (the part of CE the teacher cannot speak to, kept at weight 1); a sample
    with no teacher of its class (w = 0, or a one-sided label) has CE at weight 1 and nothing else."""
    T, n = 4.0, int(g.attrs["global_batch"])
    z = np.asarray(g["student_logits"], dtype=np.float64).reshape(-1, 5)
    zt = np.asarray(g["teacher_logits"], dtype=np.float64).reshape(-1, 5)
    y = np.asarray(g["labels"]).astype(int)
    w = np.asarray(g["weight"], dtype=np.float64)
    mask = g.attrs["teacher_classes"]
    S = np.array([c == "1" for c in (mask.decode() if isinstance(mask, bytes) else mask)])
    w = np.where(S[y], w, 0.0)  # a sample of a one-sided class has no teacher of its class

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(zt[:, S] / T), softmax(z[:, S] / T)
    kl = (w * (p * (np.log(p) - np.log(q))).sum(1)).sum() * T * T / n
    ce_weight = np.where(w > 0, 0.1, 1.0)[:, None]  # a sample without a teacher of its class: CE at 1
    P = softmax(z)
    grad = ce_weight * (P - np.eye(5)[y]) / n
    grad[:, S] += 0.9 * T * w[:, None] * (q - p) / n
    # -log P(S) of the taught samples at weight 1 - 0.1: d/dz_k = P_k (1 - [k in S] / P(S))
    mass = P[:, S].sum(1, keepdims=True)
    grad += 0.9 * (w > 0)[:, None] * P * (1 - S[None, :] / mass) / n
    kd_value = g["terms"][list(g.attrs["term_names"].split(",")).index("kd")]
    check(abs(kd_value - kl) <= 1e-5 * abs(kl), f"kd_partial: the KD term {kd_value:.8g} vs NumPy {kl:.8g}")
    err = np.abs(np.asarray(g["d_logits"]).reshape(-1, 5) - grad).max() / np.abs(grad).max()
    check(err <= 1e-5, f"kd_partial: d_logits against the NumPy closed form, relative error {err:.1e}")
    label_part = ce_weight * (P - np.eye(5)[y]) / n + 0.9 * (w > 0)[:, None] * P / n
    one_sided = np.asarray(g["d_logits"]).reshape(-1, 5)[:, ~S] - label_part[:, ~S]
    check(np.abs(one_sided).max() <= 1e-6 * np.abs(grad).max(),
          "kd_partial: the one-sided classes get the label's gradient only (CE and -log P(S)), none of KD's")


def main(path):
    check, worst = checklib.Checks("torch kd", print_passes=False), 0.0
    with h5py.File(path, "r") as f:
        numpy_kd_partial(f[[k for k in f if k.endswith("_kd_partial")][0]], check)
        for name in sorted(f):
            g = f[name]
            terms, weights, total, dz, de, dt, grads, memory = case(g)
            names = g.attrs["term_names"]
            names = (names.decode() if isinstance(names, bytes) else names).split(",")
            same_terms = sorted(names) == sorted(terms)
            check(same_terms, f"{name}: terms {names} vs torch {sorted(terms)}")
            if not same_terms:
                continue
            # a shape mismatch is a failure with no error (None), counted here as 0
            compare = lambda what, mine, ref: checklib.compare(check, f"{name} {what}", mine, ref, TOL,
                                                               flatten=True) or 0.0
            errs = []
            for i, t in enumerate(names):
                errs.append(compare(f"term {t}", g["terms"][i], terms[t]))
                errs.append(compare(f"weight of {t}", g["term_weights"][i], weights[t]))
            errs.append(compare("total", g["total"][0], total))
            errs.append(compare("d_logits", g["d_logits"], dz))
            errs.append(compare("d_embedding", g["d_embedding"], de))
            errs.append(compare("d_tokens", g["d_tokens"], dt))
            for k, v in grads.items():
                if v is None:
                    v = torch.zeros(g["grads"][k].shape)
                errs.append(compare(f"grad {k}", g["grads"][k], v))
            if memory is not None:
                errs.append(compare("memory after the step", g["state_after"], memory))
            print(f"{name:28s} worst relative error {max(errs):.2e}")
            worst = max(worst, max(errs))
    return check.summary(f"worst relative error {worst:.2e}, tolerance {TOL:.0e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
