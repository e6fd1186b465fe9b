// Fused CPU kernels of the hash encoding (trainer_adapter/model/encodings.py, torch path).
//
// The same maths as HashEncoding's torch path (nerfstudio's HashEncoding.pytorch_fwd): level l
// scales x by N_l; the 8 corners of the cell take floor or ceil per axis (corner c: bit 0 x,
// bit 1 y, bit 2 z set -> ceil); a corner's row is
// ((c_x * 1) ^ (c_y * 2654435761) ^ (c_z * 805459861)) & (T - 1) + l * T; weights are the
// trilinear (wz * wy) * wx of offset = x * N_l - floor(x * N_l). The kernels recompute the
// corners instead of storing [N, L, 8] rows and weights (300 MB at nerfacto's main field), and the
// backward runs one level per task, so each task owns its level's rows of the table gradient:
// no atomics, and one level's rows (4 MB at 2^19 x 2 floats) stay in cache.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <algorithm>
#include <cstdint>

namespace {

constexpr int64_t kPrimeY = 2654435761LL;
constexpr int64_t kPrimeZ = 805459861LL;

// One point's cell at one level: its 8 rows and the per-axis weights of floor (0) and ceil (1).
struct Cell {
  int64_t row[8];
  float w[3][2];  // w[axis][0] = 1 - offset, w[axis][1] = offset
};

// A coordinate as int64 without undefined behaviour: non-finite -> 0, clamped to +-2^62 (torch
// gives the same integers for every finite coordinate a grid sees; a non-finite one's features
// are non-finite either way).
inline int64_t to_int(float v) {
  constexpr float kLimit = 4.611686e18f;  // 2^62
  return std::isfinite(v) ? static_cast<int64_t>(std::clamp(v, -kLimit, kLimit)) : 0;
}

inline void locate(const float* x, float scale, uint64_t mask, int64_t base, Cell& cell) {
  uint64_t lo[3], hi[3];  // unsigned: products wrap as torch's int64 ones do, without UB
  for (int a = 0; a < 3; ++a) {
    const float scaled = scale * x[a];
    const float down = std::floor(scaled);
    const float offset = scaled - down;
    cell.w[a][0] = 1.0f - offset;
    cell.w[a][1] = offset;
    lo[a] = static_cast<uint64_t>(to_int(down));
    hi[a] = static_cast<uint64_t>(to_int(std::ceil(scaled)));
  }
  for (int c = 0; c < 8; ++c) {
    const uint64_t hx = (c & 1) ? hi[0] : lo[0];
    const uint64_t hy = ((c & 2) ? hi[1] : lo[1]) * static_cast<uint64_t>(kPrimeY);
    const uint64_t hz = ((c & 4) ? hi[2] : lo[2]) * static_cast<uint64_t>(kPrimeZ);
    cell.row[c] = static_cast<int64_t>((hz ^ hy ^ hx) & mask) + base;
  }
}

inline float weight(const Cell& cell, int c) {
  return (cell.w[2][(c >> 2) & 1] * cell.w[1][(c >> 1) & 1]) * cell.w[0][c & 1];
}

template <int F>
void forward_impl(const float* x, const float* table, const float* scales, int64_t n,
                  int64_t levels, int64_t size, float* out) {
  // level-major: a task walks one level's rows (in cache) for a block of points
  const int64_t block = 4096, blocks = (n + block - 1) / block;
  at::parallel_for(0, levels * blocks, 1, [&](int64_t begin, int64_t end) {
    Cell cell;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t l = task / blocks, first = (task % blocks) * block;
      const int64_t last = std::min(n, first + block);
      for (int64_t i = first; i < last; ++i) {
        locate(x + 3 * i, scales[l], static_cast<uint64_t>(size - 1), l * size, cell);
        float acc[F] = {};
        for (int c = 0; c < 8; ++c) {
          const float w = weight(cell, c);
          const float* row = table + cell.row[c] * F;
          for (int f = 0; f < F; ++f) acc[f] += w * row[f];
        }
        float* o = out + (i * levels + l) * F;
        for (int f = 0; f < F; ++f) o[f] = acc[f];
      }
    }
  });
}

// grad_table[row] += w * grad; grad_offset[l, i, a] = sum_c dw_c/do_a * <table[row_c], grad>.
template <int F>
void backward_impl(const float* x, const float* table, const float* scales, const float* grad,
                   int64_t n, int64_t levels, int64_t size, float* grad_table,
                   float* grad_x_levels) {
  at::parallel_for(0, levels, 1, [&](int64_t begin, int64_t end) {
    Cell cell;
    for (int64_t l = begin; l < end; ++l) {
      for (int64_t i = 0; i < n; ++i) {
        locate(x + 3 * i, scales[l], static_cast<uint64_t>(size - 1), l * size, cell);
        const float* g = grad + (i * levels + l) * F;
        float d_offset[3] = {0.0f, 0.0f, 0.0f};
        for (int c = 0; c < 8; ++c) {
          const int bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
          if (grad_table != nullptr) {
            const float w = weight(cell, c);
            float* dst = grad_table + cell.row[c] * F;
            for (int f = 0; f < F; ++f) dst[f] += w * g[f];
          }
          if (grad_x_levels != nullptr) {
            const float* row = table + cell.row[c] * F;
            float dot = 0.0f;
            for (int f = 0; f < F; ++f) dot += row[f] * g[f];
            const float sx = bx ? 1.0f : -1.0f, sy = by ? 1.0f : -1.0f, sz = bz ? 1.0f : -1.0f;
            d_offset[0] += dot * sx * (cell.w[2][bz] * cell.w[1][by]);
            d_offset[1] += dot * sy * (cell.w[2][bz] * cell.w[0][bx]);
            d_offset[2] += dot * sz * (cell.w[1][by] * cell.w[0][bx]);
          }
        }
        if (grad_x_levels != nullptr) {
          float* dx = grad_x_levels + (l * n + i) * 3;
          for (int a = 0; a < 3; ++a) dx[a] = scales[l] * d_offset[a];
        }
      }
    }
  });
}

void check(const torch::Tensor& x, const torch::Tensor& table, const torch::Tensor& scales) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "hashgrid_cpu: CPU tensors only");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3 && x.is_contiguous(), "x: contiguous [N, 3]");
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous(), "table: contiguous [L * T, F]");
  TORCH_CHECK(x.scalar_type() == at::kFloat && table.scalar_type() == at::kFloat, "float32 only");
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous(), "scales: float32");
  TORCH_CHECK(scales.device().is_cpu() && scales.dim() == 1 && scales.size(0) > 0,
              "scales: [L] on the CPU, L > 0");
  TORCH_CHECK(table.size(0) > 0 && table.size(0) % scales.size(0) == 0,
              "table rows: levels x size, size > 0");
}

#define DISPATCH_F(F_VALUE, CALL)                                                   \
  switch (F_VALUE) {                                                                \
    case 1: { constexpr int F = 1; CALL; break; }                                   \
    case 2: { constexpr int F = 2; CALL; break; }                                   \
    case 4: { constexpr int F = 4; CALL; break; }                                   \
    case 8: { constexpr int F = 8; CALL; break; }                                   \
    default: TORCH_CHECK(false, "hashgrid_cpu: features per level must be 1, 2, 4 or 8"); \
  }

}  // namespace

// x [N, 3] in [0, 1], table [L * T, F], scales [L] -> features [N, L, F]
torch::Tensor encode(torch::Tensor x, torch::Tensor table, torch::Tensor scales) {
  check(x, table, scales);
  const int64_t n = x.size(0), levels = scales.size(0), size = table.size(0) / levels;
  TORCH_CHECK((size & (size - 1)) == 0, "hashgrid_cpu: table size must be a power of two");
  auto out = torch::empty({n, levels, table.size(1)}, table.options());
  DISPATCH_F(table.size(1), forward_impl<F>(x.data_ptr<float>(), table.data_ptr<float>(),
                                            scales.data_ptr<float>(), n, levels, size,
                                            out.data_ptr<float>()));
  return out;
}

// -> (grad_table [L * T, F] or undefined, grad_x [N, 3] or undefined)
std::vector<torch::Tensor> encode_backward(torch::Tensor grad, torch::Tensor x,
                                           torch::Tensor table, torch::Tensor scales,
                                           bool table_grad, bool x_grad) {
  check(x, table, scales);
  const int64_t n = x.size(0), levels = scales.size(0), size = table.size(0) / levels;
  grad = grad.contiguous().to(at::kFloat);
  TORCH_CHECK(grad.numel() == n * levels * table.size(1), "grad: [N, L, F]");
  torch::Tensor grad_table, grad_x_levels, grad_x;
  if (table_grad) grad_table = torch::zeros_like(table);
  if (x_grad) grad_x_levels = torch::empty({levels, n, 3}, x.options());
  DISPATCH_F(table.size(1),
             backward_impl<F>(x.data_ptr<float>(), table.data_ptr<float>(),
                              scales.data_ptr<float>(), grad.data_ptr<float>(), n, levels, size,
                              table_grad ? grad_table.data_ptr<float>() : nullptr,
                              x_grad ? grad_x_levels.data_ptr<float>() : nullptr));
  if (x_grad) grad_x = grad_x_levels.sum(0);
  return {grad_table, grad_x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // no Python objects are touched: the loader's decode threads and the viewer run meanwhile
  m.def("encode", &encode, "hash-grid encoding, fused (CPU)",
        py::call_guard<py::gil_scoped_release>());
  m.def("encode_backward", &encode_backward, "its backward (CPU)",
        py::call_guard<py::gil_scoped_release>());
}
