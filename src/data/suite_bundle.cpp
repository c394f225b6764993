// The bundle format of the benchmark suite (suite.h: write_suite_bundle, and
// build_suite's --bundle), apart from the suite build (suite.cpp).
//
// A bundle is what the suite is drawn from, without the packages: DIR/index.json.gz
// (gzipped JSON, schema clr.suite-bundle/1: per task its classes, packages and assets with class,
// group, key, split and payload files; per package its version and licences) and one
// PNG per distinct payload, DIR/<sha256>.png (grey for masks, RGB, or RGBA). Payloads
// are uint8 values / 255 both ways, so a suite built from a bundle has the same bytes
// as one built from the packages.
//
// The index is gzipped JSON (tens of thousands of assets with their keys).
#include <set>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "clr/data/assets.h"
#include "clr/data/image.h"
#include "clr/data/suite.h"
#include "detail/suite_build.h"

namespace clr::data {
namespace suite_internal {
namespace {

at::Tensor payload_to_u8(const at::Tensor& p) {
  const at::Tensor u8 = (p * 255).round().clamp(0, 255).to(torch::kUInt8);
  return p.dim() == 2 ? u8.unsqueeze(2).contiguous() : u8.contiguous();
}

at::Tensor payload_from_png(const std::string& bytes, const std::string& origin, int channels) {
  at::Tensor rgba = decode_rgba(bytes, origin);  // float [H, W, 4], value / 255
  if (channels == 1) return rgba.select(2, 0).contiguous();
  if (channels == 3) return rgba.narrow(2, 0, 3).contiguous();
  return rgba;
}

TaskAssets bundle_task_unchecked(const Bundle& b, const std::string& task, const std::string& dir) {
  const auto& tasks = b.index.at("tasks");
  CLR_CHECK(tasks.contains(task), NotFoundError, "the bundle '", dir, "' has no task '", task, "'");
  const auto& t = tasks.at(task);
  TaskAssets out;
  out.classes = t.at("classes").get<std::vector<std::string>>();
  out.packages = t.at("packages").get<std::vector<std::string>>();
  out.skipped = t.value("skipped", std::vector<std::string>{});
  const auto& assets = t.at("assets");
  out.assets.resize(assets.size());
  out.payloads.resize(assets.size());
  at::parallel_for(0, static_cast<int64_t>(assets.size()), 8, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const auto& a = assets[static_cast<size_t>(i)];
      SuiteAsset& s = out.assets[static_cast<size_t>(i)];
      s.cls = a.at("cls").get<int64_t>();
      s.group = a.at("group").get<std::string>();
      s.key = a.at("key").get<std::string>();
      s.split = a.at("split").get<int>();
      for (const auto& p : a.at("payloads")) {
        const std::string file = dir + "/" + p.at("file").get<std::string>();
        out.payloads[static_cast<size_t>(i)].push_back(payload_from_png(read_file(file), file, p.at("channels").get<int>()));
      }
    }
  });
  return out;
}

}  // namespace

Bundle read_bundle(const std::string& dir) {
  const std::string path = dir + "/index.json.gz";
  CLR_CHECK(file_exists(path), NotFoundError, "'", dir, "' is not a suite bundle (no index.json.gz); make one with `clr data bundle`");
  Bundle b;
  try {
    b.index = nlohmann::json::parse(read_maybe_gzipped(path));
    check_json_numbers(b.index, path);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat("'", path, "' is not JSON: ", e.what()));
  }
  CLR_CHECK(json_string_is(b.index, "schema", "clr.suite-bundle/1"), FormatError, "'", path,
            "' is not a suite bundle (expected schema clr.suite-bundle/1)");
  try {
    for (const auto& [name, p] : b.index.at("packages").items()) {
      b.packages[name] = {p.at("version").get<std::string>(), p.at("licenses").get<std::vector<std::string>>()};
    }
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat("'", path, "' has a malformed package list: ", e.what()));
  }
  return b;
}

TaskAssets bundle_task(const Bundle& b, const std::string& task, const std::string& dir) {
  try {
    return bundle_task_unchecked(b, task, dir);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat("the bundle '", dir, "' has a malformed entry for task '", task, "': ", e.what()));
  }
}

}  // namespace suite_internal

std::string write_suite_bundle(const SuiteOptions& options) {
  CLR_CHECK(!options.out.empty(), ConfigError, "the bundle needs an output directory (--out DIR)");
  const std::string out = strip_trailing_slashes(options.out);
  CLR_CHECK(options.overwrite || !directory_exists(out), ConfigError, "'", out,
            "' exists; choose another --out or pass --overwrite to replace it");
  if (options.overwrite) suite_internal::check_replaceable(out, "index.json.gz", "bundle");
  StagedDirectory staged(out);
  const std::string& partial = staged.path();
  suite_internal::SuiteContext ctx(options, options.cache_dir.empty() ? suite_internal::default_cache_dir()
                                                                      : options.cache_dir);
  nlohmann::ordered_json tasks = nlohmann::ordered_json::object();
  std::set<std::string> packages, files;
  int64_t bytes = 0;
  for (const auto& recipe : suite_internal::chosen_recipes(options.set, options.tasks)) {
    log::info("bundle: task '", recipe.info.name, "'");
    const suite_internal::TaskAssets ta = suite_internal::load_task_assets(recipe, ctx);
    packages.insert(ta.packages.begin(), ta.packages.end());
    // Encode in parallel, write (deduplicated by content) in order.
    std::vector<std::vector<std::pair<std::string, std::string>>> pngs(ta.assets.size());  // (sha, bytes)
    at::parallel_for(0, static_cast<int64_t>(ta.assets.size()), 8, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        for (const auto& p : ta.payloads[static_cast<size_t>(i)]) {
          std::string png = encode_png(suite_internal::payload_to_u8(p));
          pngs[static_cast<size_t>(i)].emplace_back(sha256_hex(png), std::move(png));
        }
      }
    });
    nlohmann::ordered_json assets = nlohmann::ordered_json::array();
    for (size_t i = 0; i < ta.assets.size(); ++i) {
      const suite_internal::SuiteAsset& a = ta.assets[i];
      nlohmann::ordered_json payloads = nlohmann::ordered_json::array();
      for (size_t v = 0; v < pngs[i].size(); ++v) {
        const auto& [sha, png] = pngs[i][v];
        const std::string file = sha.substr(0, 40) + ".png";
        if (files.insert(file).second) {
          write_file(partial + "/" + file, png);  // the whole tree moves into place when complete
          bytes += static_cast<int64_t>(png.size());
        }
        const at::Tensor& p = ta.payloads[i][v];
        payloads.push_back({{"file", file}, {"channels", p.dim() == 2 ? 1 : p.size(2)}});
      }
      assets.push_back({{"cls", a.cls}, {"group", a.group}, {"key", a.key}, {"split", a.split}, {"payloads", payloads}});
    }
    tasks[recipe.info.name] = {
        {"classes", ta.classes}, {"packages", ta.packages}, {"skipped", ta.skipped}, {"assets", assets}};
  }
  nlohmann::ordered_json pk = nlohmann::ordered_json::object();
  for (const auto& p : packages) {
    const DebianPackage& dp = ctx.package(p);
    pk[p] = {{"version", dp.version}, {"licenses", dp.licenses}};
  }
  const nlohmann::ordered_json index = {
      {"schema", "clr.suite-bundle/1"}, {"set", options.set}, {"tasks", tasks}, {"packages", pk}};
  write_gzip_atomic(partial + "/index.json.gz", index.dump() + "\n");
  staged.commit();
  log::info("bundle: ", files.size(), " payload files, ", bytes / 1024 / 1024, " MiB, in ", out);
  return out;
}

}  // namespace clr::data
