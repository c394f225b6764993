#include "clr/data/sources.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/path.h"
#include "clr/core/strings.h"
#include "clr/core/tensor_map.h"

namespace clr::data {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string> subdirectories(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& name : list_directory(dir)) {
    if (!name.empty() && name[0] != '.' && directory_exists(dir + "/" + name)) out.push_back(name);
  }
  return out;
}

// Images of one split directory: <dir>/<class>/<image>. Classes not in `classes`
// are added when `grow` (the train split), an error otherwise.
Split read_split_dir(const std::string& dir, std::vector<std::string>& classes, bool grow, const std::string& task) {
  Split split;
  const std::vector<std::string> dirs = subdirectories(dir);
  if (grow) classes = dirs;
  std::vector<std::string> unknown;
  for (const auto& cls : dirs) {
    auto it = std::find(classes.begin(), classes.end(), cls);
    if (it == classes.end()) {
      unknown.push_back(cls);
      continue;
    }
    const int64_t label = it - classes.begin();
    for (const auto& f : list_directory(dir + "/" + cls)) {
      if (f.empty() || f[0] == '.' || !is_image_file(f)) continue;
      split.paths.push_back(dir + "/" + cls + "/" + f);
      split.labels.push_back(label);
    }
  }
  CLR_CHECK(unknown.empty(), ConfigError, "task '", task, "': '", dir, "' has classes that its train split lacks: ",
            join_first(unknown));
  return split;
}


// Dimensions of an unsigned-byte IDX file; checks magic and size.
std::vector<int64_t> idx_dims(const std::string& b, const std::string& path, size_t expected_rank) {
  CLR_CHECK(b.size() >= 4 && b[0] == 0 && b[1] == 0, FormatError, "'", path,
            "' is not an IDX file (expected magic 0x0000 0x08 <rank>)");
  CLR_CHECK(static_cast<unsigned char>(b[2]) == 0x08, FormatError, "'", path, "': IDX element type 0x", std::hex,
            static_cast<int>(static_cast<unsigned char>(b[2])), std::dec, " is not unsigned byte (0x08)");
  const size_t rank = static_cast<unsigned char>(b[3]);
  CLR_CHECK(rank == expected_rank, FormatError, "'", path, "': IDX rank ", rank, ", expected ", expected_rank);
  CLR_CHECK(b.size() >= 4 + 4 * rank, FormatError, "'", path, "' is truncated (header)");
  std::vector<int64_t> dims;
  uint64_t total = 1;  // dimensions are 32-bit; their product is checked before it can wrap
  for (size_t i = 0; i < rank; ++i) {
    dims.push_back(read_be32(b, 4 + 4 * i));
    CLR_CHECK(!__builtin_mul_overflow(total, static_cast<uint64_t>(dims.back()), &total) && total <= (1ull << 40),
              FormatError, "'", path, "': IDX dimensions ", join_first([&] {
                std::vector<std::string> d;
                for (int64_t x : dims) d.push_back(std::to_string(x));
                return d;
              }()), " promise more than 2^40 bytes");
  }
  CLR_CHECK(b.size() == 4 + 4 * rank + static_cast<size_t>(total), FormatError, "'", path, "' holds ",
            b.size() - 4 - 4 * rank, " data bytes, its header promises ", total, " (truncated?)");
  return dims;
}

}  // namespace

bool is_image_file(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  static const std::set<std::string> exts = {"jpg", "jpeg", "png", "bmp", "gif", "webp"};
  return exts.count(lower(name.substr(dot + 1))) > 0;
}

bool is_single_task_folder(const std::string& root) { return directory_exists(root + "/train"); }

TaskData read_imagefolder_task(const std::string& dir, const std::string& name) {
  require_directory(dir, "task directory");
  CLR_CHECK(directory_exists(dir + "/train"), ConfigError, "task '", name, "': '", dir,
            "' has no train/ directory; expected <task>/{train,val,test}/<class>/<image>");
  TaskData t;
  t.name = name;
  t.origin = "imagefolder '" + dir + "'";
  t.train = read_split_dir(dir + "/train", t.classes, true, name);
  for (const char* v : {"val", "validation"}) {
    if (directory_exists(dir + "/" + v)) {
      t.val = read_split_dir(dir + "/" + v, t.classes, false, name);
      break;
    }
  }
  if (directory_exists(dir + "/test")) t.test = read_split_dir(dir + "/test", t.classes, false, name);
  return t;
}

Sequence read_imagefolder_tasks(const std::string& root) {
  require_directory(root, "data root");
  if (is_single_task_folder(root)) {
    return {read_imagefolder_task(root, base_name(strip_trailing_slashes(root)))};
  }
  std::vector<std::string> names;
  const std::string order = root + "/order.txt";
  if (file_exists(order)) {
    std::istringstream in(read_file(order));
    for (std::string line; std::getline(in, line);) {
      line = trim(line);
      if (!line.empty() && line[0] != '#') names.push_back(line);
    }
    CLR_CHECK(!names.empty(), ConfigError, "'", order, "' lists no tasks");
  } else {
    names = subdirectories(root);
  }
  CLR_CHECK(!names.empty(), ConfigError, "data root '", root,
            "' has no task directories; expected ROOT/<task>/{train,val,test}/<class>/<image> or "
            "ROOT/{train,val,test}/<class>/<image>");
  Sequence seq;
  for (const auto& n : names) seq.push_back(read_imagefolder_task(root + "/" + n, n));
  return seq;
}

Split read_list_file(const std::string& path) {
  const std::string text = read_file(path);
  const std::string base = dir_name(path);
  Split split;
  std::istringstream in(text);
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const auto sep = line.find_last_of(" \t");
    CLR_CHECK(sep != std::string::npos, FormatError, "'", path, "' line ", line_no, ": expected '<image path> <label>', got '",
              line, "'");
    const std::string file = trim(line.substr(0, sep));
    const std::string label = line.substr(sep + 1);
    int64_t value = -1;
    try {
      size_t used = 0;
      value = std::stoll(label, &used);
      CLR_CHECK(used == label.size(), FormatError, "bad label");
    } catch (const std::exception&) {
      throw FormatError(detail::concat("'", path, "' line ", line_no, ": label '", label, "' is not an integer"));
    }
    CLR_CHECK(value >= 0, FormatError, "'", path, "' line ", line_no, ": negative label ", value);
    split.paths.push_back(!file.empty() && file[0] == '/' ? file : base + "/" + file);
    split.labels.push_back(value);
  }
  return split;
}

at::Tensor read_idx_images(const std::string& path) {
  const std::string b = read_maybe_gzipped(path);
  const auto dims = idx_dims(b, path, 3);
  at::Tensor t = torch::empty({dims[0], dims[1], dims[2], 1}, torch::kUInt8);
  if (t.numel() > 0) std::memcpy(t.data_ptr(), b.data() + 16, static_cast<size_t>(t.numel()));
  return t;
}

std::vector<int64_t> read_idx_labels(const std::string& path) {
  const std::string b = read_maybe_gzipped(path);
  const auto dims = idx_dims(b, path, 1);
  std::vector<int64_t> labels(static_cast<size_t>(dims[0]));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<unsigned char>(b[8 + i]);
  return labels;
}

Split read_cifar_binary(const std::vector<std::string>& files, bool cifar100) {
  const size_t label_bytes = cifar100 ? 2 : 1;
  const size_t record = label_bytes + 3072;
  std::vector<at::Tensor> parts;
  Split split;
  for (const auto& f : files) {
    const std::string b = read_file(f);
    CLR_CHECK(!b.empty() && b.size() % record == 0, FormatError, "'", f, "' has ", b.size(),
              " bytes, not a multiple of the ", record, "-byte CIFAR-", cifar100 ? "100" : "10",
              " record (wrong file or variant?)");
    const int64_t n = static_cast<int64_t>(b.size() / record);
    at::Tensor chw = torch::empty({n, 3, 32, 32}, torch::kUInt8);
    auto* dst = chw.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i) {
      const char* rec = b.data() + static_cast<size_t>(i) * record;
      const int64_t label = static_cast<unsigned char>(rec[label_bytes - 1]);  // CIFAR-100: the fine label
      CLR_CHECK(label < (cifar100 ? 100 : 10), FormatError, "'", f, "' record ", i, ": label ", label,
                " out of range for CIFAR-", cifar100 ? "100" : "10");
      split.labels.push_back(label);
      std::memcpy(dst + i * 3072, rec + label_bytes, 3072);
    }
    parts.push_back(chw.permute({0, 2, 3, 1}).contiguous());
  }
  CLR_CHECK(!parts.empty(), ConfigError, "no CIFAR files given");
  split.images = torch::cat(parts);
  return split;
}

namespace {

struct Db {
  sqlite3* db = nullptr;
  std::string path;
  explicit Db(const std::string& p) : path(p) {
    require_file(p, "SKILL catalog");
    CLR_CHECK(sqlite3_open_v2(p.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK, FormatError,
              "cannot open SQLite catalog '", p, "': ", db ? sqlite3_errmsg(db) : "out of memory");
  }
  ~Db() { sqlite3_close(db); }
  bool has_table(const std::string& name) {
    bool found = false;
    query("SELECT name FROM sqlite_master WHERE type='table' AND name='" + name + "'", [&](sqlite3_stmt*) { found = true; });
    return found;
  }
  // Runs `sql` and calls row(stmt) per row.
  template <typename F>
  void query(const std::string& sql, F&& row) {
    sqlite3_stmt* st = nullptr;
    CLR_CHECK(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, FormatError, "'", path,
              "' is not a SKILL catalog: ", sqlite3_errmsg(db), " (query: ", sql, ")");
    int rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
    const std::string err = sqlite3_errmsg(db);
    sqlite3_finalize(st);
    CLR_CHECK(rc == SQLITE_DONE, FormatError, "'", path, "': query failed: ", err);
  }
};

std::string column_text(sqlite3_stmt* st, int i) {
  const auto* t = sqlite3_column_text(st, i);
  return t ? reinterpret_cast<const char*>(t) : "";
}

}  // namespace

Sequence read_skill(const std::string& root, const SkillOptions& options) {
  Db db(root + "/rolling_releases/database_2.sqlite");
  std::map<int64_t, std::string> names;
  db.query("SELECT dataset_id, dataset_name FROM datasets ORDER BY dataset_id",
           [&](sqlite3_stmt* st) { names[sqlite3_column_int64(st, 0)] = column_text(st, 1); });

  // Optional class names (catalogs written by write_skill_catalog have them).
  std::map<std::pair<int64_t, int64_t>, std::string> class_names;
  if (db.has_table("classes")) {
    db.query("SELECT dataset_id, class_id, class_name FROM classes", [&](sqlite3_stmt* st) {
      class_names[{sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)}] = column_text(st, 2);
    });
  }

  // (order, dataset_id) of the selected tasks.
  std::vector<std::pair<int64_t, int64_t>> selected;
  if (options.task_csv.empty()) {
    for (const auto& kv : names) selected.emplace_back(kv.first, kv.first);
  } else {
    std::istringstream in(read_file(options.task_csv));
    std::string line;
    size_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      line = trim(line);
      if (line.empty() || line_no == 1) continue;  // header: oldid,newid,name,class_num,train_num,test_num
      std::vector<std::string> cols;
      std::stringstream ls(line);
      for (std::string c; std::getline(ls, c, ',');) cols.push_back(trim(c));
      CLR_CHECK(cols.size() >= 3, FormatError, "'", options.task_csv, "' line ", line_no,
                ": expected oldid,newid,name,...; got '", line, "'");
      int64_t oldid = 0, newid = 0;
      try {
        oldid = std::stoll(cols[0]);
        newid = std::stoll(cols[1]);
      } catch (const std::exception&) {
        throw FormatError(detail::concat("'", options.task_csv, "' line ", line_no, ": oldid and newid must be integers"));
      }
      CLR_CHECK(names.count(oldid), ConfigError, "'", options.task_csv, "' line ", line_no, ": dataset id ", oldid,
                " ('", cols[2], "') is not in the catalog");
      selected.emplace_back(newid, oldid);
    }
    std::sort(selected.begin(), selected.end());
  }

  Sequence seq;
  for (const auto& [order, id] : selected) {
    TaskData t;
    t.name = names[id];
    t.origin = detail::concat("SKILL dataset ", id, " in '", root, "'");
    std::map<int64_t, int64_t> label_of;  // class_id -> label (train's class ids, sorted)
    std::vector<std::tuple<int, int64_t, std::string>> rows;  // set, class_id, path
    db.query(detail::concat("SELECT \"set\", class_id, path, filename FROM files WHERE dataset_id=", id,
                            " AND problem=0 ORDER BY hash"),
             [&](sqlite3_stmt* st) {
               rows.emplace_back(sqlite3_column_int(st, 0), sqlite3_column_int64(st, 1),
                                 root + "/original_images/" + t.name + column_text(st, 2) + column_text(st, 3));
             });
    for (const auto& [set, cls, path] : rows) {
      if (set == 0) label_of.emplace(cls, 0);
    }
    int64_t next = 0;
    for (auto& kv : label_of) {
      kv.second = next++;
      auto named = class_names.find({id, kv.first});
      t.classes.push_back(named != class_names.end() ? named->second : std::to_string(kv.first));
    }
    std::vector<std::string> unknown;
    for (const auto& [set, cls, path] : rows) {
      CLR_CHECK(set >= 0 && set <= 2, FormatError, "'", db.path, "': dataset ", id, " has set value ", set,
                ", expected 0 (train), 1 (val) or 2 (test)");
      auto it = label_of.find(cls);
      if (it == label_of.end()) {
        unknown.push_back(path);
        continue;
      }
      Split& s = set == 0 ? t.train : set == 1 ? t.val : t.test;
      s.paths.push_back(path);
      s.labels.push_back(it->second);
    }
    CLR_CHECK(unknown.empty(), ConfigError, "task '", t.name, "': val/test images of classes without training images: ",
              join_first(unknown, 4));
    if (options.cap_per_split > 0) {
      const auto k = static_cast<int64_t>(t.classes.size());
      t.train = balanced_subset(t.train, k, options.cap_per_split, options.seed);
      t.val = balanced_subset(t.val, k, options.cap_per_split, options.seed + 1);
      t.test = balanced_subset(t.test, k, options.cap_per_split, options.seed + 2);
    }
    seq.push_back(std::move(t));
  }
  return seq;
}

void write_skill_catalog(const std::string& root, const SkillCatalog& catalog) {
  make_directories(root + "/rolling_releases");
  const std::string path = root + "/rolling_releases/database_2.sqlite";
  const std::string tmp = temporary_path(path);
  std::remove(tmp.c_str());
  sqlite3* db = nullptr;
  const int opened = sqlite3_open_v2(tmp.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  // Closes the connection on every path (close_v2 also when statements are left) and
  // removes the temporary file unless the catalog was completed.
  struct Closer {
    sqlite3* db;
    std::string tmp;
    bool ok = false;
    ~Closer() {
      sqlite3_close_v2(db);
      if (!ok) std::remove(tmp.c_str());
    }
  } closer{db, tmp};
  CLR_CHECK(opened == SQLITE_OK, NotFoundError, "cannot create SQLite catalog '", tmp, "': ",
            db ? sqlite3_errmsg(db) : "out of memory");
  struct Statement {
    sqlite3_stmt* st = nullptr;
    ~Statement() { sqlite3_finalize(st); }
  };
  auto exec = [&](const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    const std::string msg = err ? err : "";
    sqlite3_free(err);
    CLR_CHECK(rc == SQLITE_OK, FormatError, "writing '", tmp, "' failed: ", msg, " (", sql.substr(0, 80), ")");
  };
  exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
  exec("CREATE TABLE datasets(dataset_id INTEGER PRIMARY KEY, dataset_name TEXT NOT NULL)");
  exec("CREATE TABLE classes(dataset_id INTEGER, class_id INTEGER, class_name TEXT, PRIMARY KEY(dataset_id, class_id))");
  exec("CREATE TABLE files(hash TEXT, path TEXT, filename TEXT, class_id INTEGER, dataset_id INTEGER, "
       "problem INTEGER DEFAULT 0, \"set\" INTEGER)");
  exec("BEGIN");
  auto prepare = [&](Statement& s, const char* sql) {
    CLR_CHECK(sqlite3_prepare_v2(db, sql, -1, &s.st, nullptr) == SQLITE_OK, FormatError, "'", tmp, "': ",
              sqlite3_errmsg(db));
    return s.st;
  };
  auto step = [&](sqlite3_stmt* st) {
    CLR_CHECK(sqlite3_step(st) == SQLITE_DONE, FormatError, "'", tmp, "': ", sqlite3_errmsg(db));
    sqlite3_reset(st);
  };
  Statement sd, sc, sf;
  sqlite3_stmt* ds = prepare(sd, "INSERT INTO datasets VALUES(?, ?)");
  sqlite3_stmt* cs = prepare(sc, "INSERT INTO classes VALUES(?, ?, ?)");
  sqlite3_stmt* fs = prepare(sf, "INSERT INTO files VALUES(?, ?, ?, ?, ?, 0, ?)");
  std::ostringstream csv;
  csv << "oldid,newid,name,class_num,train_num,test_num\n";
  int64_t order = 0;
  for (const auto& d : catalog.datasets) {
    sqlite3_bind_int64(ds, 1, d.id);
    sqlite3_bind_text(ds, 2, d.name.c_str(), -1, SQLITE_TRANSIENT);
    step(ds);
    for (size_t c = 0; c < d.classes.size(); ++c) {
      sqlite3_bind_int64(cs, 1, d.id);
      sqlite3_bind_int64(cs, 2, static_cast<int64_t>(c));
      sqlite3_bind_text(cs, 3, d.classes[c].c_str(), -1, SQLITE_TRANSIENT);
      step(cs);
    }
    int64_t train = 0, test = 0;
    for (const auto& f : d.files) {
      sqlite3_bind_text(fs, 1, f.hash.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(fs, 2, f.path.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(fs, 3, f.filename.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(fs, 4, f.class_id);
      sqlite3_bind_int64(fs, 5, d.id);
      sqlite3_bind_int(fs, 6, f.set);
      step(fs);
      train += f.set == 0 ? 1 : 0;
      test += f.set == 2 ? 1 : 0;
    }
    csv << d.id << ',' << ++order << ',' << d.name << ',' << d.classes.size() << ',' << train << ',' << test << '\n';
  }
  exec("COMMIT");
  for (Statement* s : {&sd, &sc, &sf}) {
    sqlite3_finalize(s->st);
    s->st = nullptr;
  }
  CLR_CHECK(sqlite3_close(db) == SQLITE_OK, FormatError, "closing '", tmp, "' failed");
  closer.db = nullptr;
  commit_temporary(tmp, path);
  closer.ok = true;
  write_file_atomic(root + "/tasks.csv", csv.str());
}

}  // namespace clr::data
