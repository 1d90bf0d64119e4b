"""Builds the compiled kernels, ``aigc_engine._C``; everything else lives in pyproject.toml.

CPU kernels are always built. CUDA kernels are added when a CUDA toolkit is found and a GPU is
visible, or when ``FORCE_CUDA=1`` (for building on a machine without a GPU).
"""
import glob
import os
import sys

from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def _want_cuda() -> bool:
    import torch

    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def _cxx_std() -> str:
    """C++20 when the installed torch's headers demand it (torch >= 2.14), else C++17."""
    import torch.utils.cpp_extension as ce

    for inc in ce.include_paths():
        header = os.path.join(inc, "ATen", "ATen.h")
        if os.path.exists(header):
            with open(header) as f:
                return "c++20" if "C++20 or later" in f.read() else "c++17"
    return "c++17"


def _host_has_avx2() -> bool:
    if os.environ.get("AIGC_ENGINE_PORTABLE", "0") == "1":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def _extension():
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    std = _cxx_std()
    cxx = ["-O3", f"-std={std}", "-fopenmp", "-DNDEBUG"]
    if os.environ.get("AIGC_ENGINE_NATIVE", "0") == "1":
        cxx.append("-march=native")
    elif _host_has_avx2():
        # at::vec::Vectorized only uses AVX2 intrinsics (and Sleef's exp/log1p, exported by
        # libtorch_cpu) when CPU_CAPABILITY_AVX2 is defined; AIGC_ENGINE_PORTABLE=1 opts out.
        cxx += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    kwargs = dict(
        name="aigc_engine._C",
        include_dirs=[os.path.join(here, "csrc")],
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
    if _want_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        kwargs["extra_compile_args"] = {
            "cxx": cxx,
            "nvcc": ["-O3", f"-std={std}", "--expt-relaxed-constexpr"],
        }
        print("aigc-engine: building CPU and CUDA kernels", file=sys.stderr)
        return CUDAExtension(sources=sources, **kwargs)
    kwargs["extra_compile_args"] = {"cxx": cxx}
    print("aigc-engine: building CPU kernels only (no CUDA toolkit/GPU; FORCE_CUDA=1 to force)",
          file=sys.stderr)
    return CppExtension(sources=sources, **kwargs)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
