// Helpers of benchmarks/agc_rdataframe_port.py: our port of the ROOT team's RDataFrame
// implementation of the AGC CMS ttbar analysis (root-project/analysis-grand-challenge,
// analyses/cms-open-data-ttbar/helpers.h), with our stage's numerical conventions so
// that the histograms can be compared bin by bin with swift_rules.agc.ttbar:
//
// - float64 throughout: varied jet pT, HT, weights (the RDF AGC uses RVecF, float32);
// - the jet-resolution factor is our stage's (swift_rules.agc.kernels.jet_normal): a
//   Normal(1, width) number seeded from (run, luminosityBlock, event, jet index) with
//   splitmix64 and Box-Muller. The RDF AGC derives it from the digits of the jet pT
//   (gaussian_quantile of 0.001 * (int(pt * 1000) % 1000) + 0.0005).
//
// The constants (JES factor, JER width, b-tag and W+jets weight steps) are passed in by the
// port from swift_rules.agc.ttbar, so that both sides use the very same doubles.
//
// namespace agc_original: the RDF AGC's own float32 helpers, for the port's "original"
// arithmetic (a timing and a comparison of what float32 and its pT-digit smearing change).
#ifndef SWIFT_RULES_AGC_RDATAFRAME_H
#define SWIFT_RULES_AGC_RDATAFRAME_H

#include <cmath>
#include <cstdint>

#include "Math/QuantFuncMathCore.h"
#include "Math/Vector4D.h"
#include "ROOT/RVec.hxx"

namespace agc_port {

inline std::uint64_t splitmix64(std::uint64_t x)
{
   x += 0x9E3779B97F4A7C15ULL;
   x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
   x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
   return x ^ (x >> 31);
}

// 64-bit key of an event's identity (kernels.event_key).
inline std::uint64_t event_key(std::uint64_t run, std::uint64_t luminosity_block, std::uint64_t event)
{
   std::uint64_t key = splitmix64(run);
   key = splitmix64(key ^ luminosity_block);
   return splitmix64(key ^ event);
}

// Standard-normal number of jet `local_index` of the event with `key` (kernels.jet_normal).
inline double jet_normal(std::uint64_t key, std::uint64_t local_index)
{
   const double two_pow_minus_53 = 1.0 / 9007199254740992.0;
   const double pi = 3.141592653589793; // Python's math.pi
   const std::uint64_t bits1 = splitmix64(key ^ splitmix64(local_index));
   const std::uint64_t bits2 = splitmix64(bits1);
   const double u1 = (static_cast<double>(bits1 >> 11) + 0.5) * two_pow_minus_53;
   const double u2 = (static_cast<double>(bits2 >> 11) + 0.5) * two_pow_minus_53;
   return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * pi * u2);
}

} // namespace agc_port

// The RDF AGC's pt_res_up factor per jet, drawn as our stage draws it.
inline ROOT::RVecD jet_pt_resolution(std::uint64_t run, std::uint64_t luminosity_block, std::uint64_t event,
                                     std::size_t n_jets, double width)
{
   ROOT::RVecD res(n_jets);
   const std::uint64_t key = agc_port::event_key(run, luminosity_block, event);
   for (std::size_t i = 0; i < n_jets; ++i)
      res[i] = 1.0 + width * agc_port::jet_normal(key, i);
   return res;
}

// Weight variation from the i-th jet's pT: 1 +- step * pT / 50 GeV for the first four jets.
inline ROOT::RVecD btag_weight_variation(const ROOT::RVecD &jet_pt, double step)
{
   ROOT::RVecD res;
   res.reserve(8);
   for (double pt : Take(jet_pt, 4)) {
      const double var = step * pt / 50.0;
      res.push_back(1.0 + var);
      res.push_back(1.0 - var);
   }
   return res;
}

inline ROOT::RVecD flat_variation(double step)
{
   return ROOT::RVecD{1.0 + step, 1.0 - step};
}

namespace agc_original {

// As helpers.h of the RDF AGC: a Normal(1, width) factor from the digits of the jet pT.
inline ROOT::RVecF jet_pt_resolution(const ROOT::RVecF &jet_pt, double width)
{
   ROOT::RVecF res(jet_pt.size());
   for (std::size_t i = 0; i < jet_pt.size(); ++i) {
      const double u = 0.001 * (static_cast<int>(jet_pt[i] * 1000) % 1000) + 0.0005;
      res[i] = 1. + ROOT::Math::gaussian_quantile(u, width);
   }
   return res;
}

inline ROOT::RVecF btag_weight_variation(const ROOT::RVecF &jet_pt, double step)
{
   ROOT::RVecF res;
   res.reserve(8);
   for (float pt : Take(jet_pt, 4)) {
      res.push_back(1 + step * pt / 50);
      res.push_back(1 - step * pt / 50);
   }
   return res;
}

inline ROOT::RVecF flat_variation(double step)
{
   return 1 + ROOT::RVecF({static_cast<float>(step), static_cast<float>(-step)});
}

} // namespace agc_original

inline ROOT::RVec<ROOT::Math::PxPyPzMVector>
ConstructP4(const ROOT::RVecD &pt, const ROOT::RVecD &eta, const ROOT::RVecD &phi, const ROOT::RVecD &m)
{
   return ROOT::VecOps::Construct<ROOT::Math::PxPyPzMVector>(
      ROOT::VecOps::Construct<ROOT::Math::PtEtaPhiMVector>(pt, eta, phi, m));
}

#endif
