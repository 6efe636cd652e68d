// oneDNN's convolution primitives (float32) in each layout, primitive alone, for comparison
// with the im2col path (conv_ops.cpp; src/dynamics/conv_dnnl.cpp runs variant 1, or variant
// 2 with the reorders of the activations). Compiled only where CMake found oneDNN
// (EQPROP_HAVE_DNNL). The same FLOP count (2 * MACs) as conv_ops.cpp:
//   (C_in, side, C_out, batch) = (128, 16, 128, 16) [VGG-6 layer, 3x3 SAME]
//                              = (16, 14, 32, 32)   [CPU Fashion-MNIST layer]
// Ops: forward (z = conv(l)), backward-data (dl = conv^T(dz), our conv_transpose) and
// backward-weights (gW = dz im2col(l)^T, our conv_weight_grad).
// Layout variants (last benchmark argument):
//   0 "nhwc":     activations nhwc and weights hwio, i.e. our own buffers, no reorders;
//   1 "nhwc+wany": activations nhwc, weights in oneDNN's preferred format (reordered once,
//                  outside the loop: weights are fixed during a relaxation);
//   2 "any":      every tensor in oneDNN's preferred format, primitive only (best case,
//                  reorders from/to our buffers not timed).
// Every benchmark checks oneDNN's result against the im2col path once (counter "relerr",
// Frobenius) and labels itself with the implementation oneDNN picked. Threads: oneDNN uses OpenMP
// (set OMP_NUM_THREADS=1 to compare with conv_ops.cpp, which is single-threaded).
//   eqprop_microbench --benchmark_filter='Conv.*Float/'
#ifdef EQPROP_HAVE_DNNL
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <oneapi/dnnl/dnnl.hpp>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "conv_bench_layer.hpp"
#include "eqprop/learn/reference.hpp"  // relative_error

namespace {
using namespace eqprop;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

enum class op { fwd, bwd_data, bwd_weights };

// Wraps a user buffer (our layout) and, if the primitive wants another format, a buffer in
// that format plus the reorders between them.
struct tensor {
  dnnl::memory user, prim;
  bool reordered = false;
  tensor(const dnnl::memory::desc& user_md, const dnnl::memory::desc& prim_md, const dnnl::engine& e, float* data)
      : user(user_md, e, data) {
    reordered = !(user_md == prim_md);
    prim = reordered ? dnnl::memory(prim_md, e) : user;
  }
  void to_prim(dnnl::stream& s) {
    if (reordered) dnnl::reorder(user, prim).execute(s, user, prim);
  }
  void to_user(dnnl::stream& s) {
    if (reordered) dnnl::reorder(prim, user).execute(s, prim, user);
  }
};

void dnnl_conv(benchmark::State& st, op o) {
  const int c_in = int(st.range(0)), side = int(st.range(1)), c_out = int(st.range(2));
  const long B = st.range(3);
  const int variant = int(st.range(4));
  const auto g = bench::conv_layer_3x3(c_in, side, c_out);

  // Our buffers and our reference result (the im2col path).
  const conv_backend before = conv_backend_in_use();
  set_conv_backend(conv_backend::im2col);
  matrix<float> W = matrix<float>::Random(g.cout, g.patch());
  const const_matrix_map<float> Wm(W.data(), W.rows(), W.cols());
  matrix<float> l = matrix<float>::Random(g.in_size(), B), z = matrix<float>::Random(g.conv_size(), B), col, ref;
  if (o == op::fwd) conv_forward<float, float>(g, Wm, l, col, ref);
  else if (o == op::bwd_data) conv_transpose<float, float>(g, Wm, z, col, ref, false);
  else {
    ref.setZero(g.cout, g.patch());
    conv_weight_grad<float, float>(g, z, l, col, 1.0f, matrix_map<float>(ref.data(), ref.rows(), ref.cols()));
  }
  set_conv_backend(before);
  matrix<float> out_l(g.in_size(), B), out_z(g.conv_size(), B), out_w(g.cout, g.patch());

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::dims src_d = {B, g.cin, g.h, g.w}, dst_d = {B, g.cout, g.ho, g.wo},
                           wei_d = {g.cout, g.cin, g.k, g.k}, strides = {1, 1}, pad_l = {g.pad, g.pad},
                           pad_r = {(g.ho - 1) + g.k - g.pad - g.h, (g.wo - 1) + g.k - g.pad - g.w};
  // Our layouts: states HWC per sample (one sample per column) = nhwc; W(co, (ky*k+kx)*C_in + ci),
  // column-major = co fastest, then ci, kx, ky = hwio.
  const dnnl::memory::desc src_u(src_d, dt::f32, tag::nhwc), dst_u(dst_d, dt::f32, tag::nhwc),
      wei_u(wei_d, dt::f32, tag::hwio);
  const tag act = variant == 2 ? tag::any : tag::nhwc, wt = variant == 0 ? tag::hwio : tag::any;
  const dnnl::memory::desc src_q(src_d, dt::f32, act), dst_q(dst_d, dt::f32, act), wei_q(wei_d, dt::f32, wt);

  const auto algo = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::primitive_desc fwd_pd(
      dnnl::convolution_forward::desc(
          o == op::fwd ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training, algo, src_q, wei_q,
          dst_q, strides, pad_l, pad_r),
      eng);

  dnnl::primitive prim;
  std::string impl;
  // In: the tensors read (reordered in before the loop); res: the result, its user buffer.
  std::unordered_map<int, dnnl::memory> args;
  std::vector<tensor> in;
  tensor* res = nullptr;
  std::vector<tensor> outs;
  float* res_data = nullptr;
  long res_n = 0;
  if (o == op::fwd) {
    in.emplace_back(src_u, fwd_pd.src_desc(), eng, l.data());
    in.emplace_back(wei_u, fwd_pd.weights_desc(), eng, W.data());
    outs.emplace_back(dst_u, fwd_pd.dst_desc(), eng, out_z.data());
    args = {{DNNL_ARG_SRC, in[0].prim}, {DNNL_ARG_WEIGHTS, in[1].prim}, {DNNL_ARG_DST, outs[0].prim}};
    prim = dnnl::convolution_forward(fwd_pd);
    impl = fwd_pd.impl_info_str();
    res_data = out_z.data(), res_n = out_z.size();
  } else if (o == op::bwd_data) {
    const dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(algo, src_q, wei_q, dst_q, strides, pad_l, pad_r), eng, fwd_pd);
    in.emplace_back(dst_u, pd.diff_dst_desc(), eng, z.data());
    in.emplace_back(wei_u, pd.weights_desc(), eng, W.data());
    outs.emplace_back(src_u, pd.diff_src_desc(), eng, out_l.data());
    args = {{DNNL_ARG_DIFF_DST, in[0].prim}, {DNNL_ARG_WEIGHTS, in[1].prim}, {DNNL_ARG_DIFF_SRC, outs[0].prim}};
    prim = dnnl::convolution_backward_data(pd);
    impl = pd.impl_info_str();
    res_data = out_l.data(), res_n = out_l.size();
  } else {
    const dnnl::convolution_backward_weights::primitive_desc pd(
        dnnl::convolution_backward_weights::desc(algo, src_q, wei_q, dst_q, strides, pad_l, pad_r), eng, fwd_pd);
    in.emplace_back(src_u, pd.src_desc(), eng, l.data());
    in.emplace_back(dst_u, pd.diff_dst_desc(), eng, z.data());
    outs.emplace_back(wei_u, pd.diff_weights_desc(), eng, out_w.data());
    args = {{DNNL_ARG_SRC, in[0].prim}, {DNNL_ARG_DIFF_DST, in[1].prim}, {DNNL_ARG_DIFF_WEIGHTS, outs[0].prim}};
    prim = dnnl::convolution_backward_weights(pd);
    impl = pd.impl_info_str();
    res_data = out_w.data(), res_n = out_w.size();
  }
  res = &outs[0];
  for (auto& t : in) t.to_prim(strm);
  prim.execute(strm, args);
  res->to_user(strm);
  strm.wait();
  const double err = relative_error(std::span<const float>(res_data, res_n), std::span<const float>(ref.data(), res_n));
  // Cost of reordering the weights from our hwio layout (once per weight update), if any.
  double wreorder_us = 0;
  if (o != op::bwd_weights && in[1].reordered) {
    const int reps = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) in[1].to_prim(strm);
    strm.wait();
    wreorder_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  }

  for (auto _ : st) {
    prim.execute(strm, args);
    strm.wait();
    benchmark::DoNotOptimize(res_data);
  }
  const double macs = double(g.conv_size()) * g.patch() * B;
  st.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.counters["relerr"] = err;
  st.counters["wreorder_us"] = wreorder_us;
  static const char* names[] = {"nhwc", "nhwc+wany", "any"};
  std::string re;
  for (auto& t : in) re += t.reordered ? "r" : "-";
  re += res->reordered ? "r" : "-";
  st.SetLabel(std::string(names[variant]) + " " + impl + " reord[" + re + "]");
}

void dnnl_args(benchmark::internal::Benchmark* b) {
  for (int v = 0; v < 3; ++v) b->Args({128, 16, 128, 16, v})->Args({16, 14, 32, 32, v});
  b->Unit(benchmark::kMillisecond);
}

void DnnlConvForwardFloat(benchmark::State& st) { dnnl_conv(st, op::fwd); }
void DnnlConvBackwardDataFloat(benchmark::State& st) { dnnl_conv(st, op::bwd_data); }
void DnnlConvBackwardWeightsFloat(benchmark::State& st) { dnnl_conv(st, op::bwd_weights); }
BENCHMARK(DnnlConvForwardFloat)->Apply(dnnl_args);
BENCHMARK(DnnlConvBackwardDataFloat)->Apply(dnnl_args);
BENCHMARK(DnnlConvBackwardWeightsFloat)->Apply(dnnl_args);
}  // namespace
#endif  // EQPROP_HAVE_DNNL
