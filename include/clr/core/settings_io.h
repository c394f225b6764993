// The one list of a settings struct's keys, and the JSON conversion made from it
// (see clr/core/settings.h). For source files only: it includes all of nlohmann-json.
//
// A struct lists its keys once, in a function found by argument-dependent lookup:
//
//   template <class V> void fields(V& v, TrainConfig& c) {
//     v("optimizer", c.optimizer);
//     v("lr", c.lr);
//     v("batch", c.batch_size);  // a key may differ from the member's name
//   }
//   CLR_SETTINGS_JSON(TrainConfig)  // defines to_json and from_json from fields()
//
// Reading is strict: a key the list does not name is a SettingError listing the known
// keys; booleans must be booleans, integers integers (unsigned ones not negative),
// strings strings; a float field takes any number; a std::vector<std::string> also
// takes one string; a std::optional is empty when the key is absent or null; a nested
// struct or a vector of structs is read by its own from_json, its errors named by the
// whole path ("data.tasks[2].kind").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "clr/core/settings.h"

namespace clr::settings {

namespace internal {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

std::string type_name(const Json& v);
[[noreturn]] void wrong_type(const Json& v, const char* expected);
std::string join_keys(const std::vector<std::string>& keys);

}  // namespace internal

// One value into `out` (errors have an empty path; the caller names the key).
template <class T>
void read_value(const Json& v, T& out) {
  if constexpr (internal::is_optional<T>::value) {
    if (v.is_null()) {
      out.reset();
    } else {
      typename T::value_type x{};
      read_value(v, x);
      out = std::move(x);
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) internal::wrong_type(v, "true or false");
    out = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) internal::wrong_type(v, "an integer");
    if constexpr (std::is_unsigned_v<T>) {
      if (!v.is_number_unsigned() && v.get<int64_t>() < 0) {
        throw SettingError(SettingError::Kind::kBadValue, "",
                           "must not be negative, got " + v.dump());
      }
      out = static_cast<T>(v.get<uint64_t>());
    } else {
      out = static_cast<T>(v.get<int64_t>());
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) internal::wrong_type(v, "a number");
    out = v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) internal::wrong_type(v, "a string");
    out = v.get<std::string>();
  } else if constexpr (internal::is_vector<T>::value) {
    using E = typename T::value_type;
    out.clear();
    if constexpr (std::is_same_v<E, std::string>) {
      if (v.is_string()) {
        out.push_back(v.get<std::string>());
        return;
      }
    }
    if (!v.is_array()) internal::wrong_type(v, "an array");
    for (size_t i = 0; i < v.size(); ++i) {
      E e{};
      try {
        read_value(v[i], e);
      } catch (const SettingError& err) {
        throw err.within("[" + std::to_string(i) + "]");
      }
      out.push_back(std::move(e));
    }
  } else {
    from_json(v, out);  // the type's own conversion (argument-dependent lookup); a struct's Reader checks
                        // that v is a table
  }
}

// The visitor that reads an object's keys into a struct's fields.
class Reader {
 public:
  explicit Reader(const Json& j) : j_(j) {
    if (!j.is_object()) internal::wrong_type(j, "a table");
  }
  template <class T>
  void operator()(const char* key, T& field) {
    known_.emplace_back(key);
    const auto it = j_.find(key);
    if (it == j_.end()) return;
    try {
      read_value(*it, field);
    } catch (const SettingError& e) {
      throw e.within(key);
    }
  }
  // Throws for the first key of the object that no field named.
  void finish() const;
  // Whether the object has `key` (for defaults that depend on another key's presence).
  bool has(const char* key) const { return j_.contains(key); }

 private:
  const Json& j_;
  std::vector<std::string> known_;
};

// The visitor that writes a struct's fields into an object, in the list's order.
class Writer {
 public:
  explicit Writer(Json& j) : j_(j) { j_ = Json::object(); }
  template <class T>
  void operator()(const char* key, const T& field) {
    if constexpr (internal::is_optional<T>::value) {
      j_[key] = field ? Json(*field) : Json(nullptr);
    } else {
      j_[key] = field;
    }
  }

 private:
  Json& j_;
};

template <class S>
void read(const Json& j, S& s) {
  Reader r(j);
  fields(r, s);
  r.finish();
}

template <class S>
void write(Json& j, const S& s) {
  Writer w(j);
  fields(w, const_cast<S&>(s));  // the writer only reads the fields
}

}  // namespace clr::settings

// Defines to_json and from_json for `Type` from its fields() list; use it in the
// struct's namespace, in a source file.
#define CLR_SETTINGS_JSON(Type)                                                               \
  void to_json(::clr::settings::Json& j, const Type& s) { ::clr::settings::write(j, s); }   \
  void from_json(const ::clr::settings::Json& j, Type& s) { ::clr::settings::read(j, s); }
