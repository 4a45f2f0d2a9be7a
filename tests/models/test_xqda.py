"""XQDA against a slow reference that enumerates every cross-view pair."""

import numpy as np
import pytest

from tfreid.models.xqda import XQDA, mahalanobis_distance, xqda_fit

RNG = np.random.default_rng(0)


def ref_covariances(x_a, x_b, labels_a, labels_b, lam=0.001):
    """(Sigma_I + lam I, Sigma_E) from explicit loops over every cross-view pair."""
    d = x_a.shape[1]
    in_cov, ex_cov, n_in, n_ex = np.zeros((d, d)), np.zeros((d, d)), 0, 0
    for i in range(len(x_a)):
        for j in range(len(x_b)):
            diff = np.outer(x_a[i] - x_b[j], x_a[i] - x_b[j])
            if labels_a[i] == labels_b[j]:
                in_cov, n_in = in_cov + diff, n_in + 1
            else:
                ex_cov, n_ex = ex_cov + diff, n_ex + 1
    return in_cov / n_in + lam * np.eye(d), ex_cov / n_ex


def ref_xqda(x_a, x_b, labels_a, labels_b, lam=0.001):
    """Covariances from explicit pair loops; eigen-decomposition of inv(S_I) S_E."""
    in_cov, ex_cov = ref_covariances(x_a, x_b, labels_a, labels_b, lam)
    values, vectors = np.linalg.eig(np.linalg.solve(in_cov, ex_cov))
    values, vectors = values.real, vectors.real
    order = np.argsort(values)[::-1]
    keep = max(1, int((values > 1).sum()))
    w = vectors[:, order[:keep]]
    m = np.linalg.inv(w.T @ in_cov @ w) - np.linalg.inv(w.T @ ex_cov @ w)
    return w, m, values[order[:keep]]


def two_view_data(num_ids=12, dim=6, per_view=(2, 1), noise=0.3):
    centres = RNG.standard_normal((num_ids, dim))
    shift = RNG.standard_normal(dim)                      # camera B colour shift
    x_a = np.concatenate([centres + noise * RNG.standard_normal(centres.shape)
                          for _ in range(per_view[0])])
    x_b = np.concatenate([centres + shift + noise * RNG.standard_normal(centres.shape)
                          for _ in range(per_view[1])])
    labels_a = np.tile(np.arange(num_ids), per_view[0])
    labels_b = np.tile(np.arange(num_ids), per_view[1])
    return x_a, x_b, labels_a, labels_b


def test_matches_pairwise_reference():
    x_a, x_b, la, lb = two_view_data()
    w, m, values = xqda_fit(x_a, x_b, la, lb)
    w_ref, m_ref, values_ref = ref_xqda(x_a, x_b, la, lb)
    np.testing.assert_allclose(values, values_ref, rtol=1e-6)
    assert np.all(values > 1)
    q, g = RNG.standard_normal((5, 6)), RNG.standard_normal((7, 6))
    # Eigenvectors are defined up to scale; the distance is not.
    np.testing.assert_allclose(mahalanobis_distance(m, q @ w, g @ w),
                               mahalanobis_distance(m_ref, q @ w_ref, g @ w_ref), rtol=1e-6,
                               atol=1e-8)


def test_qr_path_for_high_dimensions_matches_reference():
    x_a, x_b, la, lb = two_view_data(num_ids=6, dim=30, per_view=(2, 2))   # 24 samples < 30 dims
    w, m, values = xqda_fit(x_a, x_b, la, lb)
    assert w.shape[0] == 30
    w_ref, m_ref, values_ref = ref_xqda(x_a, x_b, la, lb)
    np.testing.assert_allclose(values, values_ref, rtol=1e-3)
    q, g = RNG.standard_normal((4, 30)), RNG.standard_normal((5, 30))
    np.testing.assert_allclose(mahalanobis_distance(m, q @ w, g @ w),
                               mahalanobis_distance(m_ref, q @ w_ref, g @ w_ref), rtol=1e-3,
                               atol=1e-6)


def test_fit_splits_views_by_camera_and_beats_euclidean():
    x_a, x_b, la, lb = two_view_data(num_ids=60, dim=10, per_view=(2, 2), noise=0.5)
    features = np.concatenate([x_a, x_b])
    pids, camids = np.concatenate([la, lb]), np.r_[np.zeros(len(la)), np.ones(len(lb))]
    model = XQDA().fit(features, pids, camids)
    w, m, _ = xqda_fit(x_a, x_b, la, lb)
    np.testing.assert_allclose(model.metric, m)
    # Test ids: new people, same camera shift is learned as intra-personal variation.
    qa, qb, qla, qlb = two_view_data(num_ids=60, dim=10, per_view=(1, 1), noise=0.5)
    qb = qb - qb.mean(0) + (x_b.mean(0))                 # keep the training camera shift
    dist = model.distance(qa, qb)
    euclid = ((qa[:, None] - qb[None]) ** 2).sum(-1)
    rank1 = (qlb[dist.argmin(1)] == qla).mean()
    assert dist.shape == (60, 60)
    assert rank1 >= (qlb[euclid.argmin(1)] == qla).mean()
    assert rank1 > 0.5


def test_dims_and_save_load(tmp_path):
    x_a, x_b, la, lb = two_view_data()
    model = XQDA(dims=2).fit(np.concatenate([x_a, x_b]), np.r_[la, lb],
                             np.r_[np.full(len(la), 3), np.full(len(lb), 5)])
    assert model.projection.shape == (6, 2) and model.metric.shape == (2, 2)
    model.save(tmp_path / "xqda.npz")
    loaded = XQDA.load(tmp_path / "xqda.npz")
    np.testing.assert_array_equal(loaded.distance(x_a, x_b), model.distance(x_a, x_b))


def test_bad_inputs():
    x_a, x_b, la, lb = two_view_data()
    features = np.concatenate([x_a, x_b])
    with pytest.raises(ValueError, match="camera"):
        XQDA().fit(features, np.r_[la, lb], np.zeros(len(features)))
    with pytest.raises(ValueError, match="must match"):
        XQDA().fit(features, la, np.zeros(len(features)))
    with pytest.raises(ValueError, match="both views"):
        xqda_fit(x_a, x_b, la, lb + 100)
    with pytest.raises(ValueError, match="fit first"):
        XQDA().distance(x_a, x_b)
    with pytest.raises(ValueError, match="non-finite"):
        xqda_fit(np.full_like(x_a, np.nan), x_b, la, lb)
    model = XQDA().fit(features, np.r_[la, lb], np.r_[np.zeros(len(la)), np.ones(len(lb))])
    with pytest.raises(ValueError, match="6"):
        model.transform(np.zeros((2, 5)))


def test_lanczos_solver_matches_dense():
    x_a, x_b, la, lb = two_view_data(num_ids=80, dim=40, per_view=(2, 2), noise=0.8)
    w, m, values = xqda_fit(x_a, x_b, la, lb, solver="dense")
    w_l, m_l, values_l = xqda_fit(x_a, x_b, la, lb, solver="lanczos")
    assert len(values) > 1 and len(values_l) == len(values)
    np.testing.assert_allclose(values_l, values, rtol=1e-6)
    q, g = RNG.standard_normal((4, 40)), RNG.standard_normal((5, 40))
    np.testing.assert_allclose(mahalanobis_distance(m_l, q @ w_l, g @ w_l),
                               mahalanobis_distance(m, q @ w, g @ w), rtol=1e-5)
    with pytest.raises(ValueError, match="solver"):
        xqda_fit(x_a, x_b, la, lb, solver="qr")


def test_svd_solver_is_the_reference_codes_left_singular_vectors():
    x_a, x_b, labels_a, labels_b = two_view_data(num_ids=15, dim=5, per_view=(1, 1))
    w, m, values = xqda_fit(x_a, x_b, labels_a, labels_b, solver="svd")
    # Reference: svd(inCov \ exCov); MATLAB's two-output svd returns U, S (left vectors).
    in_cov, ex_cov = ref_covariances(x_a, x_b, labels_a, labels_b)
    u, s, vt = np.linalg.svd(np.linalg.solve(in_cov, ex_cov))
    keep = max(1, int((s > 1).sum()))
    np.testing.assert_allclose(values, s[:keep], rtol=1e-6)
    np.testing.assert_allclose(np.abs(w), np.abs(u[:, :keep]), atol=1e-6)   # sign is free
    assert not np.allclose(np.abs(w), np.abs(vt.T[:, :keep]), atol=1e-3)     # not the right ones
    want_m = np.linalg.inv(u[:, :keep].T @ in_cov @ u[:, :keep]) - np.linalg.inv(
        u[:, :keep].T @ ex_cov @ u[:, :keep])
    np.testing.assert_allclose(np.abs(m), np.abs(want_m), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="solver"):
        xqda_fit(x_a, x_b, labels_a, labels_b, solver="qr")
