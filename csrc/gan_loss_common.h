// The per-element terms of the GAN losses, shared by the CPU and CUDA kernels. Each loss is a
// mean over one or two sides, and each side is one of these terms of the logit x:
//   kSoftplusNeg softplus(-x)  d/dx = -sigmoid(-x)     (ns: real side of D, and G)
//   kSoftplusPos softplus(x)   d/dx =  sigmoid(x)      (ns: fake side of D)
//   kHingeNeg    relu(1 - x)   d/dx = -[1 - x > 0]     (hinge: real side of D)
//   kHingePos    relu(1 + x)   d/dx =  [1 + x > 0]     (hinge: fake side of D)
//   kSquareOne   (x - 1)^2 / 2 d/dx = x - 1            (lsgan: real side of D, and G)
//   kSquareZero  x^2 / 2       d/dx = x                (lsgan: fake side of D)
//   kLinearNeg   -x            d/dx = -1               (wgan real side of D; hinge and wgan G)
//   kLinearPos   x             d/dx =  1               (wgan: fake side of D)
#pragma once

#include <c10/util/Exception.h>

#include <string>
#include <utility>

namespace aigc_engine {

enum class GanTerm : int { kSoftplusNeg, kSoftplusPos, kHingeNeg, kHingePos, kSquareOne,
                           kSquareZero, kLinearNeg, kLinearPos };

inline void check_gan_kind(const std::string& kind) {
  TORCH_CHECK_VALUE(kind == "ns" || kind == "hinge" || kind == "lsgan" || kind == "wgan",
                    "kind must be one of ('ns', 'hinge', 'lsgan', 'wgan'), got '", kind, "'");
}

// (real term, fake term) of the discriminator loss.
inline std::pair<GanTerm, GanTerm> d_loss_terms(const std::string& kind) {
  check_gan_kind(kind);
  if (kind == "ns") return {GanTerm::kSoftplusNeg, GanTerm::kSoftplusPos};
  if (kind == "hinge") return {GanTerm::kHingeNeg, GanTerm::kHingePos};
  if (kind == "lsgan") return {GanTerm::kSquareOne, GanTerm::kSquareZero};
  return {GanTerm::kLinearNeg, GanTerm::kLinearPos};
}

// The term of the generator loss (on the fake logits).
inline GanTerm g_loss_term(const std::string& kind) {
  check_gan_kind(kind);
  if (kind == "ns") return GanTerm::kSoftplusNeg;
  if (kind == "lsgan") return GanTerm::kSquareOne;
  return GanTerm::kLinearNeg;
}

}  // namespace aigc_engine
