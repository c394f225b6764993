#include "clr/train/methods/registry.h"

#include <algorithm>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/settings_io.h"
#include "clr/core/tensor_map.h"
#include "clr/train/clr_method.h"
#include "clr/train/methods/ccll.h"
#include "clr/train/methods/confit.h"
#include "clr/train/methods/finetune.h"
#include "clr/train/methods/separate.h"

namespace clr::train {
namespace {

struct Entry {
  const char* name;
  const char* help;
};

constexpr Entry kMethods[] = {
    {"clr", "channel-wise lightweight reprogramming: a depthwise 3x3 after every conv with kernel > 1, BN and a "
            "head per task on the frozen backbone"},
    {"clr-full", "CLR after every conv, the 1x1 downsample convs included"},
    {"residual", "a 1x1 residual adapter per conv instead of the CLR kernel (ablation)"},
    {"sgd", "fine-tune the whole network on each task in turn, a head per task"},
    {"sgd-ll", "frozen backbone, one shared last layer as wide as the largest task"},
    {"linear", "frozen backbone, a head per task (linear probe)"},
    {"ewc", "sgd + (lambda/2) sum over past tasks of F_k (theta - theta*_k)^2"},
    {"online-ewc", "sgd + (lambda/2) F~ (theta - theta*)^2, one decayed Fisher and the latest anchor"},
    {"si", "sgd + c Omega (theta - theta~)^2, Omega from the path integral of the loss"},
    {"lwf", "sgd + distillation of the previous model's outputs on the old heads"},
    {"er", "sgd + experience replay from a reservoir buffer of past images"},
    {"derpp", "DER++: replay with stored logits (MSE) and labels (CE)"},
    {"confit", "ConFiT: sgd in stages (head, + BN affine, all) with per-task BN whose means are recomputed through the "
               "current weights"},
    {"psp", "PSP: sgd with each task's conv weights bound to its own random +-1 context, a head per task"},
    {"supsup", "SupSup: a learned binary mask per task over a fixed (random) network, BN statistics and a head "
               "per task"},
    {"ccll", "CCLL: spatial and channel calibration modules after every conv's BN, and a head, per task; the base "
             "is learned on the first task, then frozen"},
    {"efts", "EFTs: a grouped 3x3 + 1x1 feature transformation after every conv, BN and a head per task; the base "
             "is learned on the first task, then frozen"},
    {"separate", "a fully fine-tuned copy of the backbone per task (upper bound; a whole backbone per task)"},
};

}  // namespace

template <class V>
void fields(V& v, MethodOptions& o) {
  v("ewc_lambda", o.ewc.lambda);
  v("ewc_gamma", o.ewc.gamma);
  v("fisher_samples", o.ewc.fisher_samples);
  v("si_c", o.si.c);
  v("si_xi", o.si.xi);
  v("lwf_alpha", o.lwf.alpha);
  v("lwf_temperature", o.lwf.temperature);
  v("buffer", o.replay.buffer);
  v("replay_batch", o.replay.batch);
  v("derpp_alpha", o.replay.alpha);
  v("derpp_beta", o.replay.beta);
  v("supsup_weights", o.supsup.weights);
  v("supsup_density", o.supsup.density);
  v("supsup_er_scale", o.supsup.er_scale);
  v("eft_base", o.eft.base);
  v("eft_spatial_group", o.eft.spatial_group);
  v("eft_depth_group", o.eft.depth_group);
  v("ccll_base", o.ccll.base);
  v("ccll_kernel", o.ccll.kernel);
  v("ccll_init", o.ccll.init);
  v("psp_context", o.psp.context);
  v("clr_norm", o.clr_norm);
}
CLR_SETTINGS_JSON(MethodOptions)

std::vector<std::string> parse_method_list(const std::string& list) {
  if (list == "all") return method_names();
  std::vector<std::string> out;
  std::string cur;
  for (char c : list + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  const auto known = method_names();
  for (const auto& m : out) {
    CLR_CHECK(std::find(known.begin(), known.end(), m) != known.end(), ConfigError, "--methods: unknown method '", m,
              "'; expected a comma-separated list of ", join_first(known, 20), " (or all)");
  }
  CLR_CHECK(!out.empty(), ConfigError, "--methods is empty; expected e.g. clr,sgd,ewc (or all)");
  for (size_t i = 0; i < out.size(); ++i) {
    CLR_CHECK(std::find(out.begin(), out.begin() + static_cast<long>(i), out[i]) == out.begin() + static_cast<long>(i),
              ConfigError, "--methods names '", out[i], "' twice");
  }
  return out;
}

void MethodOptions::validate() const {
  CLR_CHECK(kernel >= 1 && kernel % 2 == 1, ConfigError, "the CLR kernel size must be odd and >= 1, got ", kernel);
  CLR_CHECK(clr_norm == "task" || clr_norm == "affine" || clr_norm == "frozen", ConfigError,
            "clr BatchNorm mode (--clr-norm) must be task, affine or frozen, got '", clr_norm, "'");
  ewc.validate();
  si.validate();
  lwf.validate();
  replay.validate();
  supsup.validate();
  eft.validate();
  ccll.validate();
  psp.validate();
}

std::vector<std::string> method_names() {
  std::vector<std::string> out;
  for (const auto& e : kMethods) out.push_back(e.name);
  return out;
}

std::string methods_help() {
  std::string out;
  for (const auto& e : kMethods) out += detail::concat("  ", e.name, std::string(12 - std::string(e.name).size(), ' '),
                                                        e.help, "\n");
  return out;
}

std::unique_ptr<Method> make_method(const std::string& name, models::ResNet backbone, int64_t params,
                                    MethodOptions o) {
  o.validate();
  FinetuneKind kind{};
  if (parse_finetune_kind(name, &kind)) {
    return std::make_unique<FinetuneMethod>(std::move(backbone), kind, params, o.max_classes);
  }
  if (name == "ewc" || name == "online-ewc") {
    o.ewc.online = name == "online-ewc";
    o.ewc.seed = o.seed;
    return std::make_unique<EwcMethod>(std::move(backbone), params, o.ewc);
  }
  if (name == "si") return std::make_unique<SiMethod>(std::move(backbone), params, o.si);
  if (name == "lwf") return std::make_unique<LwfMethod>(std::move(backbone), params, o.lwf);
  if (name == "er" || name == "derpp") {
    o.replay.derpp = name == "derpp";
    o.replay.seed = o.seed;
    o.replay.crop = o.crop;
    return std::make_unique<ReplayMethod>(std::move(backbone), params, o.max_classes, o.replay);
  }
  if (name == "confit") return std::make_unique<ConfitMethod>(std::move(backbone), params);
  if (name == "psp") {
    o.psp.seed = o.seed;
    return std::make_unique<PspMethod>(std::move(backbone), params, o.psp);
  }
  if (name == "supsup") {
    o.supsup.seed = o.seed;
    return std::make_unique<SupsupMethod>(std::move(backbone), params, o.supsup);
  }
  if (name == "ccll") return std::make_unique<CcllMethod>(std::move(backbone), params, o.ccll);
  if (name == "efts") return std::make_unique<EftMethod>(std::move(backbone), params, o.eft);
  if (name == "separate") return std::make_unique<SeparateMethod>(std::move(backbone), params);
  const auto variants = adapters::variant_names();
  CLR_CHECK(std::find(variants.begin(), variants.end(), name) != variants.end(), ConfigError, "unknown method '",
            name, "'; expected one of ", join_first(method_names(), 20));
  adapters::ReprogramOptions ro;
  ro.variant(adapters::parse_variant(name)).kernel_size(o.kernel).norm(adapters::parse_norm_mode(o.clr_norm));
  return std::make_unique<ClrMethod>(std::move(backbone), ro, params);
}

}  // namespace clr::train
