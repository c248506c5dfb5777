// Fused CPU kernel for ironrender.fields.encodings.DenseGridEncoding (see fused_grid.py).
//
// A multi-resolution stack of dense feature grids read with trilinear interpolation, as
// F.grid_sample(mode="bilinear", padding_mode="border", align_corners=True) reads them, in one
// pass over the points for every level: the features, their Jacobian with respect to the point
// (what the SDF's gradient needs), and in the backward pass the gradients with respect to the
// grids and the points from the gradients of both outputs.
//
// Level l has R vertices per axis and F features per vertex, stored (F, R, R, R) with the axes
// (z, y, x) as grid_sample's (D, H, W). A point p maps to u_a = (p_a / bound + 1) / 2 (R - 1),
// clamped to [0, R - 1] (border padding: no gradient where clamped, ds_a = 0 there); the cell
// is i_a = min(floor(u_a), R - 2), t_a = u_a - i_a, and corner c = (c_x, c_y, c_z) of the cell
// weighs w_c = prod_a (c_a ? t_a : 1 - t_a). Then, with s_a = du_a/dp_a:
//
//   feature_f            = sum_c w_c G_f[c]
//   d feature_f / d p_a  = s_a sum_c (dw_c/dt_a) G_f[c]                 (the Jacobian J)
//
// Backward, from g (gradient of the features) and h (gradient of the Jacobian):
//
//   dL/dG_f[c] += g_f w_c + sum_a h_fa s_a dw_c/dt_a
//   dL/dp_a    += s_a sum_f sum_c G_f[c] (g_f dw_c/dt_a + sum_{b != a} h_fb s_b d2w_c/dt_a dt_b)
//
// (d2w_c/dt_a^2 = 0: the weights are linear in each t_a.) The forward pass runs the points in
// parallel; the backward pass runs the levels in parallel, each thread scattering into its own
// levels' grids and its own rows of per-level point gradients that are then summed in level
// order: no atomics, and the same sums in the same order whatever the thread count, so a
// resumed run repeats an uninterrupted one bit for bit.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

constexpr int kMaxFeatures = 16;
constexpr int64_t kGrain = 256;

template <typename scalar_t>
struct Cell {
  int64_t base;      // index of corner (0, 0, 0) in one feature's R^3 block
  int64_t step[3];   // index offset of +1 along x, y, z
  scalar_t t[3];     // position inside the cell
  scalar_t s[3];     // du/dp per axis (0 where the border clamp holds)
};

template <typename scalar_t>
inline Cell<scalar_t> locate(const scalar_t* p, int64_t R, double bound) {
  Cell<scalar_t> cell;
  const scalar_t scale = static_cast<scalar_t>((R - 1) / (2.0 * bound));
  int64_t index[3];
  for (int a = 0; a < 3; ++a) {
    scalar_t u = (p[a] / static_cast<scalar_t>(bound) + 1) / 2 * static_cast<scalar_t>(R - 1);
    scalar_t s = scale;
    const scalar_t top = static_cast<scalar_t>(R - 1);
    if (!(u >= 0)) {  // also NaN, as grid_sample's clip does
      u = 0;
      s = 0;
    } else if (u > top) {
      u = top;
      s = 0;
    }
    int64_t i = static_cast<int64_t>(std::floor(u));
    if (i > R - 2) i = R - 2;
    index[a] = i;
    cell.t[a] = u - static_cast<scalar_t>(i);
    cell.s[a] = s;
  }
  cell.step[0] = 1;
  cell.step[1] = R;
  cell.step[2] = R * R;
  cell.base = index[0] + R * (index[1] + R * index[2]);
  return cell;
}

// The weight of corner c and its derivatives along each t_a.
template <typename scalar_t>
inline void corner_weights(const Cell<scalar_t>& cell, int c, scalar_t& w, scalar_t dw[3],
                           scalar_t sign[3], scalar_t factor[3]) {
  for (int a = 0; a < 3; ++a) {
    const bool upper = (c >> a) & 1;
    factor[a] = upper ? cell.t[a] : 1 - cell.t[a];
    sign[a] = upper ? 1 : -1;
  }
  w = factor[0] * factor[1] * factor[2];
  dw[0] = sign[0] * factor[1] * factor[2];
  dw[1] = factor[0] * sign[1] * factor[2];
  dw[2] = factor[0] * factor[1] * sign[2];
}

template <typename scalar_t>
inline int64_t corner_index(const Cell<scalar_t>& cell, int c) {
  return cell.base + (c & 1) * cell.step[0] + ((c >> 1) & 1) * cell.step[1] +
         ((c >> 2) & 1) * cell.step[2];
}

void check_inputs(const torch::Tensor& points, const std::vector<torch::Tensor>& grids) {
  TORCH_CHECK(points.device().is_cpu(), "dense grid kernel: points must be on the CPU");
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "dense grid kernel: points (N, 3)");
  TORCH_CHECK(points.is_contiguous(), "dense grid kernel: points must be contiguous");
  for (const auto& grid : grids) {
    TORCH_CHECK(grid.dim() == 4, "dense grid kernel: each grid is (F, R, R, R)");
    TORCH_CHECK(grid.size(1) == grid.size(2) && grid.size(2) == grid.size(3) && grid.size(1) >= 2,
                "dense grid kernel: grids must be cubes of at least 2 vertices per axis");
    TORCH_CHECK(grid.size(0) <= kMaxFeatures, "dense grid kernel: at most 16 features a level");
    TORCH_CHECK(grid.is_contiguous() && grid.scalar_type() == points.scalar_type(),
                "dense grid kernel: grids contiguous, of the points' dtype");
  }
}

}  // namespace

// Features (N, sum F_l) of the first `active` levels (zeros beyond), and when `jacobian` is set
// their derivatives (N, sum F_l, 3) with respect to the points.
std::vector<torch::Tensor> dense_grid_forward(torch::Tensor points, std::vector<torch::Tensor> grids,
                                              double bound, int64_t active, bool jacobian) {
  check_inputs(points, grids);
  const int64_t n = points.size(0);
  int64_t channels = 0;
  std::vector<int64_t> offsets;
  for (const auto& grid : grids) {
    offsets.push_back(channels);
    channels += grid.size(0);
  }
  auto features = torch::zeros({n, channels}, points.options());
  auto jac = jacobian ? torch::zeros({n, channels, 3}, points.options()) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "dense_grid_forward", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    scalar_t* out = features.data_ptr<scalar_t>();
    scalar_t* out_jac = jacobian ? jac.data_ptr<scalar_t>() : nullptr;
    for (int64_t level = 0; level < std::min<int64_t>(active, grids.size()); ++level) {
      const scalar_t* g = grids[level].data_ptr<scalar_t>();
      const int64_t R = grids[level].size(1), F = grids[level].size(0), block = R * R * R;
      const int64_t offset = offsets[level];
      at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const Cell<scalar_t> cell = locate(p + 3 * i, R, bound);
          scalar_t value[kMaxFeatures] = {0};
          scalar_t slope[kMaxFeatures][3] = {{0}};
          for (int c = 0; c < 8; ++c) {
            scalar_t w, dw[3], sign[3], factor[3];
            corner_weights(cell, c, w, dw, sign, factor);
            const int64_t corner = corner_index(cell, c);
            for (int64_t f = 0; f < F; ++f) {
              const scalar_t v = g[f * block + corner];
              value[f] += w * v;
              slope[f][0] += dw[0] * v;
              slope[f][1] += dw[1] * v;
              slope[f][2] += dw[2] * v;
            }
          }
          for (int64_t f = 0; f < F; ++f) {
            out[i * channels + offset + f] = value[f];
            if (out_jac != nullptr) {
              scalar_t* row = out_jac + (i * channels + offset + f) * 3;
              for (int a = 0; a < 3; ++a) row[a] = slope[f][a] * cell.s[a];
            }
          }
        }
      });
    }
  });
  return {features, jac};
}

// Gradients with respect to the first `active` grids (dense, one tensor per level; undefined
// beyond) and, when `point_gradient` is set, to the points; `grad_features` (N, C) and
// `grad_jacobian` (N, C, 3) may each be empty (no gradient reached that output).
std::vector<torch::Tensor> dense_grid_backward(torch::Tensor points, std::vector<torch::Tensor> grids,
                                               torch::Tensor grad_features,
                                               torch::Tensor grad_jacobian, double bound,
                                               int64_t active, bool point_gradient) {
  check_inputs(points, grids);
  const int64_t n = points.size(0);
  const bool has_g = grad_features.numel() > 0, has_h = grad_jacobian.numel() > 0;
  int64_t channels = 0;
  std::vector<int64_t> offsets;
  for (const auto& grid : grids) {
    offsets.push_back(channels);
    channels += grid.size(0);
  }
  if (has_g) {
    grad_features = grad_features.contiguous();
    TORCH_CHECK(grad_features.size(0) == n && grad_features.size(1) == channels,
                "dense grid kernel: grad_features (N, C)");
  }
  if (has_h) {
    grad_jacobian = grad_jacobian.contiguous();
    TORCH_CHECK(grad_jacobian.size(0) == n && grad_jacobian.size(1) == channels,
                "dense grid kernel: grad_jacobian (N, C, 3)");
  }
  std::vector<torch::Tensor> result;
  const int64_t levels = std::min<int64_t>(active, grids.size());
  for (int64_t level = 0; level < static_cast<int64_t>(grids.size()); ++level) {
    result.push_back(level < levels && (has_g || has_h) ? torch::zeros_like(grids[level])
                                                        : torch::Tensor());
  }
  auto per_level = point_gradient ? torch::zeros({std::max<int64_t>(levels, 1), n, 3}, points.options())
                                 : torch::Tensor();
  if (!has_g && !has_h) {
    result.push_back(point_gradient ? per_level.sum(0) : torch::Tensor());
    return result;
  }
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "dense_grid_backward", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* gf = has_g ? grad_features.data_ptr<scalar_t>() : nullptr;
    const scalar_t* hj = has_h ? grad_jacobian.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, levels, 1, [&](int64_t first, int64_t last) {
      for (int64_t level = first; level < last; ++level) {
        const scalar_t* g = grids[level].data_ptr<scalar_t>();
        scalar_t* dg = result[level].data_ptr<scalar_t>();
        scalar_t* gp = point_gradient ? per_level[level].data_ptr<scalar_t>() : nullptr;
        const int64_t R = grids[level].size(1), F = grids[level].size(0), block = R * R * R;
        const int64_t offset = offsets[level];
        for (int64_t i = 0; i < n; ++i) {
          const Cell<scalar_t> cell = locate(p + 3 * i, R, bound);
          scalar_t gi[kMaxFeatures] = {0};
          scalar_t hi[kMaxFeatures][3] = {{0}};  // h_fa s_a
          for (int64_t f = 0; f < F; ++f) {
            const int64_t k = i * channels + offset + f;
            if (has_g) gi[f] = gf[k];
            if (has_h) {
              for (int a = 0; a < 3; ++a) hi[f][a] = hj[k * 3 + a] * cell.s[a];
            }
          }
          scalar_t point[3] = {0, 0, 0};
          for (int c = 0; c < 8; ++c) {
            scalar_t w, dw[3], sign[3], factor[3];
            corner_weights(cell, c, w, dw, sign, factor);
            const int64_t corner = corner_index(cell, c);
            for (int64_t f = 0; f < F; ++f) {
              dg[f * block + corner] +=
                  gi[f] * w + hi[f][0] * dw[0] + hi[f][1] * dw[1] + hi[f][2] * dw[2];
              if (gp != nullptr) {
                const scalar_t v = g[f * block + corner];
                // d2w/dt_a dt_b = sign_a sign_b factor_other (a != b)
                const scalar_t dxy = sign[0] * sign[1] * factor[2];
                const scalar_t dxz = sign[0] * sign[2] * factor[1];
                const scalar_t dyz = sign[1] * sign[2] * factor[0];
                point[0] += v * (gi[f] * dw[0] + hi[f][1] * dxy + hi[f][2] * dxz);
                point[1] += v * (gi[f] * dw[1] + hi[f][0] * dxy + hi[f][2] * dyz);
                point[2] += v * (gi[f] * dw[2] + hi[f][0] * dxz + hi[f][1] * dyz);
              }
            }
          }
          if (gp != nullptr) {
            for (int a = 0; a < 3; ++a) gp[3 * i + a] = point[a] * cell.s[a];
          }
        }
      }
    });
  });
  result.push_back(point_gradient ? per_level.sum(0) : torch::Tensor());
  return result;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &dense_grid_forward, "dense grid features (and Jacobian)");
  m.def("backward", &dense_grid_backward, "dense grid gradients (grids, points)");
}
