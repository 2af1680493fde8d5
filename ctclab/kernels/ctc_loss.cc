// The CTC loss and its gradient with respect to the logits, as one TensorFlow CPU op.
//
// Inputs: logits (B, T, C) unnormalized scores, batch-major as the models emit them; labels
// (B, L) int32, padded, only the first label_length[b] of row b read; label_length (B,);
// logit_length (B,), the true output frames of row b (clipped to T). Attribute blank: the blank's
// class index. Outputs: loss (B,) = -log p(labels | logits) and gradient (B, T, C) = d loss[b] /
// d logits[b] (zero on padded frames), so the registered gradient is one broadcast product.
//
// The forward-backward runs in probability space with the classic per-frame rescaling (Graves et
// al. 2006, section 4.1): the softmax of each frame is taken in double precision; alpha_t and
// beta_t are divided by their sums after every frame and the log of the forward sums adds up to
// log p. Every state update is then three additions and one product, where a log-space
// recursion (TensorFlow's CTCLoss kernel) pays a log and an exp per term: that is the whole
// speed-up. States that cannot reach the end in the frames left, or be reached in the frames
// gone, are skipped. One utterance is one unit of work; the batch is spread over the worker
// threads.
//
// beta here excludes the current frame (beta_t[s] = p(rest of the labelling after t | state s at
// t)), so alpha_t[s] * beta_t[s] is the probability mass of the paths through state s at frame t
// without a division by y, and the gradient is softmax minus the normalized occupancy of each
// class: d loss / d u_tk = y_tk - sum_{s : l'_s = k} alpha_t[s] beta_t[s] / sum_s alpha_t[s] beta_t[s].
// A labelling that needs more frames than the row has is an InvalidArgument error naming the row
// (as TensorFlow's kernel does): the data generator skips such utterances before they get here.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

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

struct Row {
  const float* logits;  // (T, C) of this row
  const int* labels;    // (label_length,)
  int label_length;
  int frames;  // true output frames
  float* loss;
  float* gradient;  // (T, C) of this row
};

// The extended labelling l' = (blank, l1, blank, l2, ..., blank) and whether state s may be
// entered from s - 2 (a label different from the one before it).
struct Extended {
  std::vector<int> label;
  std::vector<char> skip;
  explicit Extended(const Row& row, int blank) : label(2 * row.label_length + 1, blank), skip(label.size(), 0) {
    for (int i = 0; i < row.label_length; ++i) {
      label[2 * i + 1] = row.labels[i];
      skip[2 * i + 1] = i > 0 && row.labels[i] != row.labels[i - 1];
    }
  }
};

// The frames the labelling needs: one per label plus a blank between each repeated pair.
int RequiredFrames(const Row& row) {
  int required = row.label_length;
  for (int i = 1; i < row.label_length; ++i) required += row.labels[i] == row.labels[i - 1];
  return required;
}

// y (frames, C) = softmax of each frame in double precision
void Softmax(const Row& row, int classes, std::vector<double>* y) {
  y->resize(static_cast<size_t>(row.frames) * classes);
  for (int t = 0; t < row.frames; ++t) {
    const float* u = row.logits + static_cast<size_t>(t) * classes;
    double* p = y->data() + static_cast<size_t>(t) * classes;
    const float peak = *std::max_element(u, u + classes);
    double sum = 0.0;
    for (int k = 0; k < classes; ++k) sum += p[k] = std::exp(static_cast<double>(u[k] - peak));
    for (int k = 0; k < classes; ++k) p[k] /= sum;
  }
}

void ComputeRow(const Row& row, int classes, int max_frames, int blank) {
  const int frames = row.frames, states = 2 * row.label_length + 1;
  std::fill(row.gradient, row.gradient + static_cast<size_t>(max_frames) * classes, 0.0f);
  if (frames == 0) {  // no frame: only the empty labelling is possible, with probability 1
    *row.loss = row.label_length == 0 ? 0.0f : std::numeric_limits<float>::infinity();
    return;
  }
  const Extended ext(row, blank);
  std::vector<double> y, alpha(static_cast<size_t>(frames) * states, 0.0), beta(alpha.size(), 0.0);
  Softmax(row, classes, &y);
  auto emit = [&](int t, int s) { return y[static_cast<size_t>(t) * classes + ext.label[s]]; };
  // the live states at frame t: reachable from the start and able to reach the end in time
  auto first = [&](int t) { return std::max(0, states - 2 * (frames - t)); };
  auto last = [&](int t) { return std::min(states - 1, 2 * t + 1); };

  double log_probability = 0.0;
  for (int t = 0; t < frames; ++t) {
    double* a = alpha.data() + static_cast<size_t>(t) * states;
    const double* prev = a - states;
    double sum = 0.0;
    for (int s = first(t); s <= last(t); ++s) {
      double mass;
      if (t == 0) {
        mass = 1.0;  // states 0 and 1 start
      } else {
        mass = prev[s] + (s > 0 ? prev[s - 1] : 0.0) + (ext.skip[s] ? prev[s - 2] : 0.0);
      }
      sum += a[s] = mass * emit(t, s);
    }
    if (std::isnan(sum)) {  // a non-finite logit: the loss and its gradient are NaN, as autodiff's would be
      *row.loss = std::numeric_limits<float>::quiet_NaN();
      std::fill(row.gradient, row.gradient + static_cast<size_t>(frames) * classes, *row.loss);
      return;
    }
    if (!(sum > 0.0)) {  // every live path underflowed (logits tens of thousands apart)
      *row.loss = std::numeric_limits<float>::infinity();
      return;
    }
    for (int s = first(t); s <= last(t); ++s) a[s] /= sum;
    log_probability += std::log(sum);
  }
  // alpha of the last frame is normalized over its live states, which are the two final ones
  // (or the single blank of an empty labelling), so it sums to 1 and adds nothing to log p
  *row.loss = static_cast<float>(-log_probability);

  for (int t = frames - 1; t >= 0; --t) {
    double* b = beta.data() + static_cast<size_t>(t) * states;
    const double* next = b + states;
    double sum = 0.0;
    for (int s = first(t); s <= last(t); ++s) {
      double mass;
      if (t == frames - 1) {
        mass = 1.0;  // the live states of the last frame are the final ones
      } else {
        mass = next[s] * emit(t + 1, s);
        if (s + 1 < states) mass += next[s + 1] * emit(t + 1, s + 1);
        if (s + 2 < states && ext.skip[s + 2]) mass += next[s + 2] * emit(t + 1, s + 2);
      }
      sum += b[s] = mass;
    }
    for (int s = first(t); s <= last(t); ++s) b[s] /= sum;
  }

  std::vector<double> occupancy(classes);
  for (int t = 0; t < frames; ++t) {
    const double* a = alpha.data() + static_cast<size_t>(t) * states;
    const double* b = beta.data() + static_cast<size_t>(t) * states;
    std::fill(occupancy.begin(), occupancy.end(), 0.0);
    double total = 0.0;
    for (int s = first(t); s <= last(t); ++s) {
      const double mass = a[s] * b[s];
      occupancy[ext.label[s]] += mass;
      total += mass;
    }
    float* g = row.gradient + static_cast<size_t>(t) * classes;
    const double* p = y.data() + static_cast<size_t>(t) * classes;
    for (int k = 0; k < classes; ++k) g[k] = static_cast<float>(p[k] - occupancy[k] / total);
  }
}

class CtcLossOp : public OpKernel {
 public:
  explicit CtcLossOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("blank", &blank_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& logits = context->input(0);
    const Tensor& labels = context->input(1);
    const Tensor& label_length = context->input(2);
    const Tensor& logit_length = context->input(3);
    OP_REQUIRES(context, logits.dims() == 3, InvalidArgument("logits must be (B, T, C), got ", logits.shape().DebugString()));
    OP_REQUIRES(context, labels.dims() == 2, InvalidArgument("labels must be (B, L), got ", labels.shape().DebugString()));
    const int64_t batch = logits.dim_size(0), max_frames = logits.dim_size(1), classes = logits.dim_size(2);
    OP_REQUIRES(context, labels.dim_size(0) == batch && label_length.NumElements() == batch && logit_length.NumElements() == batch,
                InvalidArgument("logits, labels, label_length and logit_length disagree on the batch size"));
    OP_REQUIRES(context, blank_ >= 0 && blank_ < classes, InvalidArgument("blank ", blank_, " is not a class of ", classes));
    Tensor* loss = nullptr;
    Tensor* gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch}), &loss));
    OP_REQUIRES_OK(context, context->allocate_output(1, logits.shape(), &gradient));

    const auto label_values = labels.matrix<int>();
    const auto label_lengths = label_length.vec<int>();
    const auto frame_counts = logit_length.vec<int>();
    std::vector<Row> rows(batch);
    for (int64_t b = 0; b < batch; ++b) {
      Row& row = rows[b];
      row.logits = logits.flat<float>().data() + b * max_frames * classes;
      row.labels = label_values.data() + b * labels.dim_size(1);
      row.label_length = label_lengths(b);
      row.frames = std::min<int>(std::max(frame_counts(b), 0), max_frames);
      row.loss = loss->flat<float>().data() + b;
      row.gradient = gradient->flat<float>().data() + b * max_frames * classes;
      OP_REQUIRES(context, row.label_length >= 0 && row.label_length <= labels.dim_size(1),
                  InvalidArgument("row ", b, ": label_length ", row.label_length, " outside 0..", labels.dim_size(1)));
      for (int i = 0; i < row.label_length; ++i) {
        OP_REQUIRES(context, row.labels[i] >= 0 && row.labels[i] < classes && row.labels[i] != blank_,
                    InvalidArgument("row ", b, ": label ", row.labels[i], " at position ", i, " is the blank or not a class of ", classes));
      }
      const int required = RequiredFrames(row);
      OP_REQUIRES(context, row.label_length == 0 || required <= row.frames,
                  InvalidArgument("row ", b, ": not enough frames for the labelling (required: ", required, ", available: ", row.frames, ")"));
    }
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    const int64_t cost = max_frames * (classes + 8 * labels.dim_size(1) + 4) * 10;  // rough cycles per row
    tensorflow::Shard(workers->num_threads, workers->workers, batch, cost, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) ComputeRow(rows[b], static_cast<int>(classes), static_cast<int>(max_frames), blank_);
    });
  }

 private:
  int blank_;
};

}  // namespace

REGISTER_OP("CtcLabCtcLoss")
    .Input("logits: float")
    .Input("labels: int32")
    .Input("label_length: int32")
    .Input("logit_length: int32")
    .Attr("blank: int")
    .Output("loss: float")
    .Output("gradient: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->Dim(c->input(0), 0)));
      c->set_output(1, c->input(0));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CtcLabCtcLoss").Device(tensorflow::DEVICE_CPU), CtcLossOp);
