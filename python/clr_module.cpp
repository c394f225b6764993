// The Python module `clr` (python/clr/__init__.py re-exports it): the library's serving
// engine, its run of a sequence and its image decoding, for PyTorch users. Tensors pass
// between Python and the library without copies: on Debian python3-torch and libtorch
// are one build, and the module links the same LibTorch (docs/PYTHON.md).
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <torch/python.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/runtime.h"
#include "clr/core/settings_io.h"
#include "clr/core/torch_compat.h"
#include "clr/data/config.h"
#include "clr/data/image.h"
#include "clr/eval/results.h"
#include "clr/eval/run_config.h"
#include "clr/models/backbone.h"
#include "clr/models/registry.h"
#include "clr/serve/engine.h"
#include "clr/store/store.h"

namespace py = pybind11;

namespace {

using clr::settings::Json;

// JSON text to Python objects (dicts, lists, numbers) through the standard json module.
py::object to_python(const Json& j) { return py::module_::import("json").attr("loads")(j.dump()); }
Json from_python(const py::handle& o) {
  return Json::parse(py::module_::import("json").attr("dumps")(o).cast<std::string>());
}

std::vector<std::string> task_list(const std::variant<std::string, std::vector<std::string>>& tasks, int64_t n) {
  if (const auto* one = std::get_if<std::string>(&tasks)) return std::vector<std::string>(static_cast<size_t>(n), *one);
  const auto& many = std::get<std::vector<std::string>>(tasks);
  CLR_CHECK(static_cast<int64_t>(many.size()) == n, clr::ConfigError, "got ", many.size(), " task names for ", n,
            " images: give one name for all, or one per image");
  return many;
}

// uint8 [N, 3, S, S] (or one image [3, S, S]) on the CPU, as Engine::logits takes it.
at::Tensor image_batch(const at::Tensor& images) {
  CLR_CHECK(images.scalar_type() == at::kByte && (images.dim() == 4 || images.dim() == 3) &&
                images.size(images.dim() - 3) == 3,
            clr::ConfigError, "expected uint8 images [N, 3, S, S] (Engine.preprocess makes them), got ",
            clr::describe(images));
  const at::Tensor x = images.dim() == 3 ? images.unsqueeze(0) : images;
  return x.to(at::kCPU).contiguous();
}

Json task_json(const clr::store::TaskEntry& e) {
  return Json{{"name", e.name},       {"variant", e.variant}, {"classes", e.classes}, {"input_size", e.input_size},
              {"bytes", e.bytes},     {"sha256", e.sha256},   {"file", e.file},       {"created", e.created}};
}

class PyEngine {
 public:
  PyEngine(const std::string& store, const std::string& backbone, const std::string& device,
           const std::string& precision, const std::string& memory_format, int64_t cache_mb) {
    clr::serve::EngineOptions o;
    o.store_dir = store;
    o.backbone_file = backbone;
    o.device = device;
    o.precision = precision;
    o.memory_format = memory_format;
    o.cache_bytes = cache_mb << 20;
    py::gil_scoped_release unlocked;
    engine_ = std::make_unique<clr::serve::Engine>(o);
  }

  py::list tasks() const {
    py::list out;
    for (const auto& e : engine_->tasks()) out.append(to_python(task_json(e)));
    return out;
  }

  py::object describe(const std::string& task) {
    clr::store::Adapter a;
    {
      py::gil_scoped_release unlocked;
      a = engine_->describe(task);
    }
    return to_python(Json::parse(clr::store::adapter_json(a, nullptr)));
  }

  at::Tensor preprocess(const std::string& task, const at::Tensor& hwc) {
    py::gil_scoped_release unlocked;
    return engine_->preprocess(task, hwc.to(at::kCPU).contiguous());
  }

  std::vector<at::Tensor> logits(const at::Tensor& images, const std::variant<std::string, std::vector<std::string>>& tasks) {
    const at::Tensor x = image_batch(images);
    const std::vector<std::string> names = task_list(tasks, x.size(0));
    py::gil_scoped_release unlocked;
    return engine_->logits(names, x);
  }

  py::list predict(const at::Tensor& images, const std::variant<std::string, std::vector<std::string>>& tasks,
                   int64_t top_k) {
    const at::Tensor x = image_batch(images);
    const std::vector<std::string> names = task_list(tasks, x.size(0));
    std::vector<std::vector<clr::serve::TopClass>> top;
    {
      py::gil_scoped_release unlocked;
      top = engine_->predict(names, x, top_k);
    }
    py::list out;
    for (const auto& row : top) {
      Json j = Json::array();
      for (const auto& c : row) j.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
      out.append(to_python(j));
    }
    return out;
  }

  py::list identify(const std::vector<at::Tensor>& images, const std::string& method, double threshold,
                    double temperature, int64_t top_k, int64_t top_tasks) {
    clr::serve::IdentifyOptions o;
    o.method = method;
    o.threshold = threshold;
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_tasks = top_tasks;
    std::vector<at::Tensor> cpu;
    for (const at::Tensor& i : images) cpu.push_back(i.to(at::kCPU).contiguous());
    std::vector<clr::serve::Identified> answers;
    {
      py::gil_scoped_release unlocked;
      answers = engine_->identify(cpu, o);
    }
    py::list out;
    for (const auto& a : answers) {
      Json j;
      to_json(j, a);
      out.append(to_python(j));
    }
    return out;
  }

  size_t reload() {
    py::gil_scoped_release unlocked;
    return engine_->reload();
  }

  py::object backbone() const {
    const auto& b = engine_->backbone();
    return to_python(Json{{"arch", b.arch}, {"fingerprint", b.fingerprint}, {"source", b.source}});
  }
  std::string device() const { return engine_->device(); }

 private:
  std::unique_ptr<clr::serve::Engine> engine_;
};

// A run config from a TOML path, an ImageFolder root, or a dict of its JSON form.
clr::eval::RunConfig config_of(const py::object& config) {
  clr::eval::RunConfig c;
  if (py::isinstance<py::str>(config)) {
    c = clr::eval::read_run_config(config.cast<std::string>());
  } else {
    CLR_CHECK(py::isinstance<py::dict>(config), clr::ConfigError,
              "a run config is a path (TOML file or ImageFolder root) or a dict, got ",
              py::str(config.get_type()).cast<std::string>());
    c = from_python(config).get<clr::eval::RunConfig>();
  }
  return c;
}

// A backbone file as clr reads it: its resolved description and fingerprint (what a
// store records), and its feature extractor's state dict under torchvision's names.
py::tuple load_backbone(const std::string& path, const std::optional<std::string>& arch,
                        const std::optional<bool>& small_stem) {
  clr::models::BackboneConfig c;
  c.weights = path;
  c.arch = arch;
  c.small_stem = small_stem;
  clr::TensorMap state;
  {
    py::gil_scoped_release unlocked;
    c.resolve();
    const clr::models::ResNet net = clr::models::load_backbone(c);
    state = clr::models::state_dict(*net);
  }
  const Json info = {{"arch", c.arch_name()},
                     {"small_stem", c.has_small_stem()},
                     {"fingerprint", clr::fingerprint(state)},
                     {"source", path}};
  py::dict tensors;
  for (const auto& [k, t] : state) tensors[py::str(k)] = t.detach();
  return py::make_tuple(to_python(info), tensors);
}

py::object load_config(const py::object& config) {
  clr::eval::RunConfig c = config_of(config);
  c.finalize();
  return to_python(Json(c));
}

py::object run(const py::object& config, const py::object& on_task, bool restart, const std::string& tensorboard) {
  clr::eval::RunConfig c = config_of(config);
  c.finalize();
  bool interrupted = false;
  clr::eval::RunHooks hooks;
  hooks.tensorboard_dir = tensorboard;
  // Ctrl-C reaches the run at its next checkpoint, as with `clr run`: it stops there
  // and the same call goes on later.
  hooks.stop = [&interrupted] {
    py::gil_scoped_acquire locked;
    if (PyErr_CheckSignals() != 0) {
      PyErr_Clear();
      interrupted = true;
    }
    return interrupted;
  };
  if (!on_task.is_none()) {
    hooks.on_task = [&on_task](const clr::eval::Results& r) {
      py::gil_scoped_acquire locked;
      on_task(to_python(Json::parse(clr::eval::results_json(r))));
    };
  }
  std::string results;
  try {
    py::gil_scoped_release unlocked;
    results = clr::eval::results_json(clr::eval::run(c, clr::data::load_sequence(c.data), restart, hooks));
  } catch (const clr::StoppedError& e) {
    if (interrupted) {
      PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
      throw py::error_already_set();
    }
    throw;
  }
  return to_python(Json::parse(results));
}

}  // namespace

PYBIND11_MODULE(_clr, m) {
  m.doc() = "clr: continual learning by Channel-wise Lightweight Reprogramming on a frozen CNN (C++/LibTorch)";
  // Debian's LibTorch starts with one intra-op thread: as the program does, take
  // CLR_NUM_THREADS, OMP_NUM_THREADS or every hardware thread (set_threads changes it).
  clr::runtime::configure_threads(0);

  // clr.Error and its kinds (clr/core/error.h). pybind11 tries the translators last
  // registered first, so the base goes first.
  static py::exception<clr::Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception<clr::ConfigError>(m, "ConfigError", error.ptr());
  py::register_exception<clr::NotFoundError>(m, "NotFoundError", error.ptr());
  py::register_exception<clr::FormatError>(m, "FormatError", error.ptr());
  py::register_exception<clr::IncompatibleError>(m, "IncompatibleError", error.ptr());
  py::register_exception<clr::StoppedError>(m, "StoppedError", error.ptr());
  py::register_exception<clr::InternalError>(m, "InternalError", error.ptr());

  m.attr("__version__") = CLR_VERSION;
  m.attr("libtorch_version") = clr::compat::torch_version();
  m.def(
      "set_threads", [](int n) { return clr::runtime::configure_threads(n).intra_op; }, py::arg("threads"),
      "Sets LibTorch's intra-op threads (0: CLR_NUM_THREADS, OMP_NUM_THREADS or every hardware thread); returns "
      "the count.");
  m.def(
      "read_image",
      [](const std::string& path) {
        py::gil_scoped_release unlocked;
        return clr::data::read_image(path);
      },
      py::arg("path"), "Decodes an image file (JPEG, PNG, WebP, BMP, GIF, PPM) to uint8 [H, W, 3], as clr does.");
  m.def(
      "decode_image",
      [](const py::bytes& data) {
        std::string bytes = data;
        py::gil_scoped_release unlocked;
        return clr::data::decode_image(bytes, "the bytes given");
      },
      py::arg("data"), "Decodes an encoded image held in bytes to uint8 [H, W, 3].");
  m.def("load_backbone", &load_backbone, py::arg("path"), py::arg("arch") = py::none(),
        py::arg("small_stem") = py::none(),
        "Loads a backbone file as clr does (safetensors or .pth; torchvision, timm or wrapped names): returns "
        "(info, state_dict): info has arch, small_stem and the fingerprint a store records; state_dict is the "
        "feature extractor's tensors under torchvision's names.");
  m.def("load_config", &load_config, py::arg("config"),
        "The whole run configuration (a dict, as results.json's 'config') of a TOML file, an ImageFolder root or a "
        "dict of settings, validated and with the backbone resolved from its file.");
  m.def("run", &run, py::arg("config"), py::arg("on_task") = py::none(), py::arg("restart") = false,
        py::arg("tensorboard") = "",
        "Learns a sequence as `clr run` does (config: TOML path, ImageFolder root or dict, docs/CONFIG.md) and "
        "returns results.json as a dict. on_task(results) is called after every task with the results so far. "
        "A run stopped (Ctrl-C, an exception in on_task) goes on from its checkpoint when called again unless "
        "restart=True. tensorboard: a directory for TensorBoard event files (as clr run --tensorboard).");

  py::class_<PyEngine>(m, "Engine",
                       "The serving engine over a task store (OUT/adapters of a run): the backbone loaded once, "
                       "adapters cached, one forward per batch even when it mixes tasks.")
      .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                    const std::string&, int64_t>(),
           py::arg("store"), py::arg("backbone") = "", py::arg("device") = "cpu", py::arg("precision") = "auto",
           py::arg("memory_format") = "auto", py::arg("cache_mb") = 256)
      .def("tasks", &PyEngine::tasks, "The store's tasks (dicts: name, variant, classes, input_size, ...).")
      .def("describe", &PyEngine::describe, py::arg("task"), "A task's metadata (classes, preprocessing, metrics).")
      .def("preprocess", &PyEngine::preprocess, py::arg("task"), py::arg("image"),
           "A decoded image uint8 [H, W, 3] as the task takes it: uint8 [3, S, S].")
      .def("logits", &PyEngine::logits, py::arg("images"), py::arg("tasks"),
           "Logits (a float tensor per image) of uint8 images [N, 3, S, S] under their tasks (one name, or one "
           "per image): one forward for the whole batch.")
      .def("predict", &PyEngine::predict, py::arg("images"), py::arg("tasks"), py::arg("top_k") = 5,
           "The top classes ({'class', 'index', 'prob'}) of each image under its task, as `clr predict`.")
      .def("identify", &PyEngine::identify, py::arg("images"), py::arg("method") = "gaussian",
           py::arg("threshold") = 0.0, py::arg("temperature") = 0.0, py::arg("top_k") = 5, py::arg("top_tasks") = 3,
           "Finds the task of each decoded image (uint8 [H, W, 3]) and classifies it there, as `clr predict` "
           "without --task: dicts with task (or None), confidence, tasks, top.")
      .def("reload", &PyEngine::reload, "Re-reads the store's manifest; returns the number of tasks.")
      .def_property_readonly("backbone", &PyEngine::backbone)
      .def_property_readonly("device", &PyEngine::device);
}
