# Every dependency comes from Debian's archive (see scripts/setup.sh). On the GPU
# machine the same packages are unpacked with `dpkg -x` and found through
# CMAKE_PREFIX_PATH (see docs/GPU.md).
find_package(Torch REQUIRED)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 2.1 REQUIRED)
find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto)
find_package(ZLIB REQUIRED)
find_package(SQLite3 REQUIRED)
# libwebp through plain find_* (its .pc file hard-codes /usr, which breaks the unpacked
# copy on the GPU machine).
find_path(WEBP_INCLUDE_DIR webp/decode.h REQUIRED)
find_library(WEBP_LIBRARY webp REQUIRED)
add_library(clr_webp INTERFACE)
target_include_directories(clr_webp INTERFACE ${WEBP_INCLUDE_DIR})
target_link_libraries(clr_webp INTERFACE ${WEBP_LIBRARY})
find_path(STB_INCLUDE_DIR stb/stb_image.h REQUIRED)
find_package(PNG REQUIRED)  # PNG decoding (libpng-dev)
# JPEG through libjpeg-turbo's TurboJPEG API (libturbojpeg0-dev).
find_path(TURBOJPEG_INCLUDE_DIR turbojpeg.h REQUIRED)
find_library(TURBOJPEG_LIBRARY turbojpeg REQUIRED)
add_library(clr_turbojpeg INTERFACE)
target_include_directories(clr_turbojpeg INTERFACE ${TURBOJPEG_INCLUDE_DIR})
target_link_libraries(clr_turbojpeg INTERFACE ${TURBOJPEG_LIBRARY})
find_package(tomlplusplus 3 REQUIRED)
# GNU libmicrohttpd (libmicrohttpd-dev): the HTTP server of `clr serve`.
find_path(MHD_INCLUDE_DIR microhttpd.h REQUIRED)
find_library(MHD_LIBRARY microhttpd REQUIRED)
add_library(clr_microhttpd INTERFACE)
target_include_directories(clr_microhttpd INTERFACE ${MHD_INCLUDE_DIR})
target_link_libraries(clr_microhttpd INTERFACE ${MHD_LIBRARY})
# cpp-httplib (libcpp-httplib-dev), the HTTP client of the serve tests: Debian ships it as a compiled library built with
# OpenSSL, zlib and Brotli support; the same definitions keep its classes' layout.
find_path(HTTPLIB_INCLUDE_DIR httplib.h REQUIRED)
find_library(HTTPLIB_LIBRARY cpp-httplib REQUIRED)
find_package(OpenSSL 3 REQUIRED COMPONENTS SSL)
add_library(clr_httplib INTERFACE)
target_include_directories(clr_httplib INTERFACE ${HTTPLIB_INCLUDE_DIR})
target_compile_definitions(clr_httplib INTERFACE
  CPPHTTPLIB_OPENSSL_SUPPORT CPPHTTPLIB_ZLIB_SUPPORT CPPHTTPLIB_BROTLI_SUPPORT)
target_link_libraries(clr_httplib INTERFACE ${HTTPLIB_LIBRARY} OpenSSL::SSL ZLIB::ZLIB)

# LibTorch's CMake config hands out its flags as a string; the imported target
# `torch` already carries them as INTERFACE_COMPILE_OPTIONS.
message(STATUS "clr: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
