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
}
