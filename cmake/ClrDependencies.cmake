# Every dependency comes from Debian's archive (see scripts/setup.sh). On the GPU
# machine the same packages are unpacked with `dpkg -x` and found through
# CMAKE_PREFIX_PATH (see docs/GPU.md).
find_package(Torch REQUIRED)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 2.1 REQUIRED)
find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto)

# LibTorch's CMake config hands out its flags as a string; the imported target
# `torch` already carries them as INTERFACE_COMPILE_OPTIONS.
message(STATUS "clr: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
