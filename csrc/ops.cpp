// Operator schemas of the aigc_engine library. Kernels live in cpu/*.cpp and cuda/*.cu and
// register themselves per backend with TORCH_LIBRARY_IMPL; autograd and fake (meta) kernels are
// registered from Python (aigc_engine/ops/_registrations.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// An importable module so that `import aigc_engine._C` loads the library and runs the
// static registrations below; the ops themselves are reached through torch.ops.aigc_engine.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(aigc_engine, m) {
  // log N(x_n | mu_k, Sigma_k) (+ log_weights[k]) as [N, K]; precisions_chol follows
  // scikit-learn (precision = P P^T): full [K,D,D], tied [D,D], diag [K,D], spherical [K].
  m.def("gaussian_log_prob(Tensor x, Tensor means, Tensor precisions_chol, str covariance_type, "
        "Tensor? log_weights) -> Tensor");
  // Fused EM E-step: (log_prob_norm [N], log_resp [N, K]) in one pass over the points.
  m.def("gaussian_estep(Tensor x, Tensor means, Tensor precisions_chol, str covariance_type, "
        "Tensor log_weights) -> (Tensor, Tensor)");
  // Fused E-step + M-step statistics: (stats [K, 1 + D + M] float64, sum_n log p(x_n) float64)
  // with z = x - shift, stats[k] = sum_n r_nk [1 | z_n | moments(z_n)] (see aigc_engine.ops).
  m.def("gaussian_em_stats(Tensor x, Tensor means, Tensor precisions_chol, str covariance_type, "
        "Tensor log_weights, Tensor shift, bool double_moments) -> (Tensor, Tensor)");
  // Fused GAN losses: the scalar mean loss and, when compute_grad, d loss / d logits written in
  // the same pass (empty tensors otherwise); autograd's backward only scales them.
  m.def("gan_d_loss(Tensor real_logits, Tensor fake_logits, str kind, bool compute_grad) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("gan_g_loss(Tensor fake_logits, str kind, bool compute_grad) -> (Tensor, Tensor)");
}
