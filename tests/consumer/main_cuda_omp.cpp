// The cuda policy from the installed package (protoseg::cuda_omp: Thrust's
// OpenMP device system, no GPU): a product and a softmax agree with the cpu
// policy.
#include <protoseg/cuda.hpp>
#include <protoseg/protoseg.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace protoseg;
  generator gen(7);
  const tensor<float> a = randn<float>({6, 5}, gen), b = randn<float>({5, 4}, gen);
  const auto want = softmax(matmul(a, b), 1);
  const auto got = softmax(matmul(a.to<protoseg::cuda>(), b.to<protoseg::cuda>()), 1).to<cpu>();
  float err = 0.f;
  for (std::int64_t i = 0; i < want.numel(); ++i) err = std::fmax(err, std::fabs(got.data()[i] - want.data()[i]));
  std::printf("consumer (cuda_omp): max |cuda - cpu| = %g\n", static_cast<double>(err));
  return err < 1e-5f ? 0 : 1;
}
