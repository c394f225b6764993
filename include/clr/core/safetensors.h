// The safetensors format: an 8-byte little-endian header length, a JSON header
// ({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}), then the
// raw little-endian tensor bytes. Read and written here without any other library
// than the JSON parser.
#pragma once

#include <cstdint>
#include <string>

#include "clr/core/tensor_map.h"

namespace clr {

struct SafetensorsFile {
  TensorMap tensors;  // on the CPU, contiguous
  Metadata metadata;  // the "__metadata__" map (empty when absent)
};

// Reads a whole file. Throws NotFoundError for a missing file and FormatError (naming
// the file, the tensor and what was expected) for anything malformed: truncated
// data, a header that is not JSON, an unknown dtype, offsets out of bounds or not
// matching the shape.
SafetensorsFile read_safetensors(const std::string& path);

// Parses the bytes of a whole file; `origin` names it in errors (same checks).
SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& origin);

// Reads only the metadata map, without the tensor data.
Metadata read_safetensors_metadata(const std::string& path);

// Writes tensors (moved to the CPU, made contiguous) in key order, crash-safely.
// Supported dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Serialises to bytes (what write_safetensors writes).
std::string encode_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

// A metadata value, or FormatError "<origin> has no '<key>' in its metadata" (origin
// names the file: "checkpoint 'a/b.safetensors'").
const std::string& metadata_value(const Metadata& metadata, const std::string& key, const std::string& origin);
// A metadata value that must be a count (a whole number >= 0); FormatError otherwise.
int64_t metadata_count(const Metadata& metadata, const std::string& key, const std::string& origin);

// "F32" <-> at::kFloat, ...; throws FormatError for an unknown name or type.
std::string safetensors_dtype_name(at::ScalarType type);
at::ScalarType safetensors_dtype(const std::string& name);

}  // namespace clr
