// One check for JSON read from files: nlohmann's get<int64_t>() of a floating-point
// number outside int64's range is undefined behaviour (found by clr_fuzz), so documents
// are checked once, where they are parsed, before any field is read.
#pragma once

#include <cmath>
#include <string>

#include "clr/core/error.h"

namespace clr {

// FormatError naming `origin` when `j` holds a number that is not finite or whose
// magnitude reaches 2^63 (no field of a clr file is that large).
template <class Json>
void check_json_numbers(const Json& j, const std::string& origin) {
  if (j.is_number_float()) {
    const double v = j.template get<double>();
    CLR_CHECK(std::isfinite(v) && std::fabs(v) < 9.2e18, FormatError, "'", origin, "' holds the number ", v,
              ", outside what any of its fields can be");
  } else if (j.is_structured()) {
    for (const auto& item : j) check_json_numbers(item, origin);
  }
}

// Whether `j` is an object whose `key` is the string `value`: never throws, where
// j.value(key, "") throws for a field of another type or a document that is no object
// (a results.json with "schema": 1111111111112230, found by clr_fuzz).
template <class Json>
bool json_string_is(const Json& j, const char* key, const std::string& value) {
  if (!j.is_object()) return false;
  const auto it = j.find(key);
  return it != j.end() && it->is_string() && it->template get_ref<const std::string&>() == value;
}

}  // namespace clr
