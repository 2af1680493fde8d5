// A GRU layer's recurrence over a whole sequence, forward and backward, as two TensorFlow CPU ops.
//
// The input product of every frame (x @ kernel + input bias) is computed before, as one large
// product, so these ops see xp = (T, B, 3u) with Keras' gate order (z, r, h) and run only the
// recurrence. The batch is cut into one shard per worker thread; each shard runs the whole time
// loop on its rows, so the threads never wait for each other within a sequence. Per step a shard
// does one or two small products (Eigen, single-threaded) and the gate arithmetic in place, which
// is what tf.while_loop spends most of its time scheduling op by op.
//
// An optional mask (T, B) of 0 / 1 follows Keras' RNN: on a masked frame the state is carried
// unchanged and the output repeats the previous output (zeros before the first one), or is zero
// with zero_output_for_mask.
//
// Forward outputs: h (T, B, u), the outputs; gates (T, B, 3u) = z, r and the candidate c after its
// activation; aux (T, B, u) = the candidate's recurrent term: (h_prev @ U_h + b_h) with
// reset_after, r * h_prev without; states (T, B, u), each step's state, only with a mask (it
// differs from h on masked frames; (0, B, u) without). The backward op returns the gradient of
// the loss with respect to the pre-activations: dxp (T, B, 3u), with reset_after also drec
// (T, B, 3u), the gradient with respect to the recurrent product h_prev @ U + b (it differs from
// dxp in the candidate's columns), and dh0. The weight gradients are large products over all
// frames, taken by the caller after the loop.
#include <algorithm>
#include <string>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<Matrix>;
using ConstMap = Eigen::Map<const Matrix>;

enum class Activation { kTanh, kRelu, kLinear };

Activation ParseActivation(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "linear") return Activation::kLinear;
  return Activation::kTanh;
}

// c = activation(pre), in place
template <typename Block>
void Activate(Activation activation, Block&& pre) {
  switch (activation) {
    case Activation::kTanh:
      pre = pre.array().tanh().matrix();
      break;
    case Activation::kRelu:
      pre = pre.array().max(0.0f).matrix();
      break;
    case Activation::kLinear:
      break;
  }
}

// d pre = d c * activation'(pre), written from c (tanh: 1 - c^2; relu: c > 0)
template <typename Out, typename Grad, typename Value>
void ActivationGrad(Activation activation, Out&& out, const Grad& dc, const Value& c) {
  switch (activation) {
    case Activation::kTanh:
      out = (dc.array() * (1.0f - c.array().square())).matrix();
      break;
    case Activation::kRelu:
      out = (dc.array() * (c.array() > 0.0f).template cast<float>()).matrix();
      break;
    case Activation::kLinear:
      out = dc;
      break;
  }
}

struct Sizes {
  int64_t steps, batch, units;
};

// Runs work(first_row, rows) over the batch, one shard of rows per worker thread.
template <typename Work>
void ForEachShard(OpKernelContext* context, int64_t batch, Work work) {
  auto* workers = context->device()->tensorflow_cpu_worker_threads();
  const int64_t shards = std::max<int64_t>(1, std::min<int64_t>(workers->num_threads, batch / 4));
  const int64_t per_shard = (batch + shards - 1) / shards;
  tensorflow::Shard(shards, workers->workers, shards, /*cost_per_unit=*/1 << 30, [&](int64_t begin, int64_t end) {
    for (int64_t shard = begin; shard < end; ++shard) {
      const int64_t first = shard * per_shard;
      const int64_t rows = std::min(per_shard, batch - first);
      if (rows > 0) work(first, rows);
    }
  });
}

class GruOp : public OpKernel {
 public:
  explicit GruOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string activation;
    OP_REQUIRES_OK(context, context->GetAttr("reset_after", &reset_after_));
    OP_REQUIRES_OK(context, context->GetAttr("zero_output_for_mask", &zero_output_));
    OP_REQUIRES_OK(context, context->GetAttr("activation", &activation));
    activation_ = ParseActivation(activation);
  }

 protected:
  bool reset_after_, zero_output_;
  Activation activation_;
};

class GruForwardOp : public GruOp {
 public:
  using GruOp::GruOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& xp = context->input(0);
    const Tensor& h0 = context->input(1);
    const Tensor& kernel = context->input(2);
    const Tensor& bias = context->input(3);
    const Tensor& mask = context->input(4);
    OP_REQUIRES(context, xp.dims() == 3 && h0.dims() == 2, InvalidArgument("xp must be (T, B, 3u), h0 (B, u)"));
    const Sizes n{xp.dim_size(0), xp.dim_size(1), h0.dim_size(1)};
    const int64_t u = n.units, g = 3 * u;
    OP_REQUIRES(context, xp.dim_size(2) == g, InvalidArgument("xp's last axis must be 3 * units"));
    OP_REQUIRES(context, h0.dim_size(0) == n.batch, InvalidArgument("h0 must be (B, u)"));
    OP_REQUIRES(context, kernel.dim_size(0) == u && kernel.dim_size(1) == g, InvalidArgument("kernel must be (u, 3u)"));
    OP_REQUIRES(context, bias.NumElements() == g, InvalidArgument("bias must be (3u,)"));
    const bool masked = mask.NumElements() > 0;
    OP_REQUIRES(context, !masked || mask.NumElements() == n.steps * n.batch, InvalidArgument("mask must be (T, B)"));
    Tensor *h = nullptr, *gates = nullptr, *aux = nullptr, *states = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({n.steps, n.batch, u}), &h));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({n.steps, n.batch, g}), &gates));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({n.steps, n.batch, u}), &aux));
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({masked ? n.steps : 0, n.batch, u}), &states));
    const float* xp_data = xp.flat<float>().data();
    const float* h0_data = h0.flat<float>().data();
    const float* mask_data = mask.flat<float>().data();
    float* h_data = h->flat<float>().data();
    float* gate_data = gates->flat<float>().data();
    float* aux_data = aux->flat<float>().data();
    float* state_data = masked ? states->flat<float>().data() : h_data;  // unmasked, the state is the output
    const ConstMap rk(kernel.flat<float>().data(), u, g);
    const Eigen::Map<const Eigen::RowVectorXf> rb(bias.flat<float>().data(), g);

    ForEachShard(context, n.batch, [&](int64_t first, int64_t rows) {
      Matrix inner(rows, reset_after_ ? g : 2 * u), inner_h(rows, u), h_new(rows, u);
      for (int64_t t = 0; t < n.steps; ++t) {
        const int64_t offset = t * n.batch + first;
        const ConstMap x(xp_data + offset * g, rows, g);
        const ConstMap h_prev(t == 0 ? h0_data + first * u : state_data + (offset - n.batch) * u, rows, u);
        Map gate(gate_data + offset * g, rows, g);
        Map candidate_term(aux_data + offset * u, rows, u);
        auto zr = gate.leftCols(2 * u);
        auto c = gate.rightCols(u);
        if (reset_after_) {
          inner.noalias() = h_prev * rk;
          inner.rowwise() += rb;
          zr = (1.0f / (1.0f + (-(x.leftCols(2 * u) + inner.leftCols(2 * u)).array()).exp())).matrix();
          candidate_term = inner.rightCols(u);
          c = (x.rightCols(u).array() + zr.rightCols(u).array() * candidate_term.array()).matrix();
        } else {
          inner.noalias() = h_prev * rk.leftCols(2 * u);
          zr = (1.0f / (1.0f + (-(x.leftCols(2 * u) + inner).array()).exp())).matrix();
          candidate_term = (zr.rightCols(u).array() * h_prev.array()).matrix();
          inner_h.noalias() = candidate_term * rk.rightCols(u);
          c = x.rightCols(u) + inner_h;
        }
        Activate(activation_, c);
        const auto z = zr.leftCols(u).array();
        Map out(h_data + offset * u, rows, u);
        if (!masked) {
          out = (z * h_prev.array() + (1.0f - z) * c.array()).matrix();
          continue;
        }
        h_new = (z * h_prev.array() + (1.0f - z) * c.array()).matrix();
        const auto m = Eigen::Map<const Eigen::VectorXf>(mask_data + offset, rows).array();
        Map(state_data + offset * u, rows, u) = h_prev + ((h_new - h_prev).array().colwise() * m).matrix();
        if (zero_output_ || t == 0) {
          out = (h_new.array().colwise() * m).matrix();
        } else {
          const ConstMap out_prev(h_data + (offset - n.batch) * u, rows, u);
          out = out_prev + ((h_new - out_prev).array().colwise() * m).matrix();
        }
      }
    });
  }
};

class GruBackwardOp : public GruOp {
 public:
  using GruOp::GruOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& dh_seq = context->input(0);
    const Tensor& dstates = context->input(1);
    const Tensor& h0 = context->input(2);
    const Tensor& h = context->input(3);
    const Tensor& gates = context->input(4);
    const Tensor& aux = context->input(5);
    const Tensor& states = context->input(6);
    const Tensor& mask = context->input(7);
    const Tensor& kernel = context->input(8);
    const Sizes n{h.dim_size(0), h.dim_size(1), h.dim_size(2)};
    const int64_t u = n.units, g = 3 * u;
    const bool masked = mask.NumElements() > 0;
    OP_REQUIRES(context, dh_seq.shape() == h.shape(), InvalidArgument("dh must be shaped like h"));
    OP_REQUIRES(context, !masked || (states.shape() == h.shape() && dstates.shape() == h.shape()),
                InvalidArgument("with a mask, states and dstates must be shaped like h"));
    Tensor *dxp = nullptr, *drec = nullptr, *dh0 = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({n.steps, n.batch, g}), &dxp));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({reset_after_ ? n.steps : 0, n.batch, g}), &drec));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({n.batch, u}), &dh0));
    const float* dh_data = dh_seq.flat<float>().data();
    const float* dstate_data = dstates.flat<float>().data();
    const float* h0_data = h0.flat<float>().data();
    const float* state_data = masked ? states.flat<float>().data() : h.flat<float>().data();
    const float* gate_data = gates.flat<float>().data();
    const float* aux_data = aux.flat<float>().data();
    const float* mask_data = mask.flat<float>().data();
    float* dxp_data = dxp->flat<float>().data();
    float* drec_data = drec->flat<float>().data();
    float* dh0_data = dh0->flat<float>().data();
    const ConstMap rk(kernel.flat<float>().data(), u, g);

    ForEachShard(context, n.batch, [&](int64_t first, int64_t rows) {
      // dh: the gradient reaching the carried state; dh_cell: the part that enters this step's cell
      Matrix dh = Matrix::Zero(rows, u), dh_cell(rows, u), dh_next(rows, u), d_rh(rows, u);
      Matrix d_out_repeat = Matrix::Zero(rows, u);  // masked frames repeat the previous output
      for (int64_t t = n.steps - 1; t >= 0; --t) {
        const int64_t offset = t * n.batch + first;
        const ConstMap d_out(dh_data + offset * u, rows, u);
        if (masked) {
          const auto m = Eigen::Map<const Eigen::VectorXf>(mask_data + offset, rows).array();
          dh += ConstMap(dstate_data + offset * u, rows, u);
          const Matrix d_total = d_out + d_out_repeat;
          dh_cell = ((d_total + dh).array().colwise() * m).matrix();
          dh = (dh.array().colwise() * (1.0f - m)).matrix();  // what skips the cell on masked rows
          if (zero_output_) {
            d_out_repeat.setZero();
          } else {
            d_out_repeat = (d_total.array().colwise() * (1.0f - m)).matrix();
          }
        } else {
          dh_cell = dh + d_out;
          dh.setZero();
        }
        const ConstMap h_prev(t == 0 ? h0_data + first * u : state_data + (offset - n.batch) * u, rows, u);
        const ConstMap gate(gate_data + offset * g, rows, g);
        const ConstMap candidate_term(aux_data + offset * u, rows, u);
        const auto z = gate.leftCols(u).array();
        const auto r = gate.middleCols(u, u).array();
        const auto c = gate.rightCols(u);
        Map dx(dxp_data + offset * g, rows, g);
        // h = z h_prev + (1 - z) c
        ActivationGrad(activation_, dx.rightCols(u), (dh_cell.array() * (1.0f - z)).matrix(), c);
        dx.leftCols(u) = (dh_cell.array() * (h_prev.array() - c.array()) * z * (1.0f - z)).matrix();
        dh_next = (dh_cell.array() * z).matrix() + dh;
        if (reset_after_) {
          // c = act(x_h + r * (h_prev U_h + b_h)); the recurrent product feeds all three gates
          Map dr(drec_data + offset * g, rows, g);
          dx.middleCols(u, u) = (dx.rightCols(u).array() * candidate_term.array() * r * (1.0f - r)).matrix();
          dr.leftCols(2 * u) = dx.leftCols(2 * u);
          dr.rightCols(u) = (dx.rightCols(u).array() * r).matrix();
          dh_next.noalias() += dr * rk.transpose();
        } else {
          // c = act(x_h + (r * h_prev) U_h)
          d_rh.noalias() = dx.rightCols(u) * rk.rightCols(u).transpose();
          dx.middleCols(u, u) = (d_rh.array() * h_prev.array() * r * (1.0f - r)).matrix();
          dh_next += (d_rh.array() * r).matrix();
          dh_next.noalias() += dx.leftCols(2 * u) * rk.leftCols(2 * u).transpose();
        }
        dh.swap(dh_next);
      }
      Map(dh0_data + first * u, rows, u) = dh;
    });
  }
};

}  // namespace

REGISTER_OP("CtcLabGruForward")
    .Input("xp: float")
    .Input("h0: float")
    .Input("recurrent_kernel: float")
    .Input("recurrent_bias: float")
    .Input("mask: float")
    .Output("h: float")
    .Output("gates: float")
    .Output("aux: float")
    .Output("states: float")
    .Attr("reset_after: bool")
    .Attr("zero_output_for_mask: bool = false")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      auto steps = c->Dim(c->input(0), 0);
      auto batch = c->Dim(c->input(0), 1);
      auto units = c->Dim(c->input(1), 1);
      c->set_output(0, c->MakeShape({steps, batch, units}));
      c->set_output(1, c->MakeShape({steps, batch, c->Dim(c->input(0), 2)}));
      c->set_output(2, c->MakeShape({steps, batch, units}));
      c->set_output(3, c->MakeShape({c->UnknownDim(), batch, units}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("CtcLabGruBackward")
    .Input("dh: float")
    .Input("dstates: float")
    .Input("h0: float")
    .Input("h: float")
    .Input("gates: float")
    .Input("aux: float")
    .Input("states: float")
    .Input("mask: float")
    .Input("recurrent_kernel: float")
    .Output("dxp: float")
    .Output("drec: float")
    .Output("dh0: float")
    .Attr("reset_after: bool")
    .Attr("zero_output_for_mask: bool = false")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(4));
      c->set_output(1, c->UnknownShapeOfRank(3));
      c->set_output(2, c->input(2));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CtcLabGruForward").Device(tensorflow::DEVICE_CPU), GruForwardOp);
REGISTER_KERNEL_BUILDER(Name("CtcLabGruBackward").Device(tensorflow::DEVICE_CPU), GruBackwardOp);
