# Installing clr (docs/INSTALL.md): the program, its man page (help2man), the static
# libraries with their headers and a CMake package (find_package(clr), clr::clr,
# clr::clr_http), the Python module when it is built; and a Debian package of all of
# it (cpack -G DEB, dependencies from dpkg-shlibdeps).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS clr_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT program)
install(TARGETS clr clr_toml clr_http clr_webp clr_turbojpeg clr_microhttpd EXPORT clrTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/clr DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT library)
install(EXPORT clrTargets NAMESPACE clr:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clr COMPONENT library)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/clrConfig.cmake.in
  ${PROJECT_BINARY_DIR}/clrConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clr)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/clrConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/clrConfig.cmake ${PROJECT_BINARY_DIR}/clrConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clr COMPONENT library)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/CONFIG.md ${PROJECT_SOURCE_DIR}/docs/SERVING.md
              ${PROJECT_SOURCE_DIR}/docs/PYTHON.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT program)
install(FILES ${PROJECT_SOURCE_DIR}/models/resnet18-pretrain-64px.safetensors
        DESTINATION ${CMAKE_INSTALL_DATADIR}/clr/models COMPONENT program)

# The man page, from `clr --help` and `clr --version`.
find_program(CLR_HELP2MAN help2man)
if(CLR_HELP2MAN)
  # Compressed, as Debian keeps man pages (gzip -n: no time stamp, the same bytes each build).
  add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/clr.1.gz
    COMMAND ${CLR_HELP2MAN} --no-info --section=1
            "--name=continual learning by channel-wise lightweight reprogramming of a frozen CNN"
            --output=${PROJECT_BINARY_DIR}/clr.1 $<TARGET_FILE:clr_cli>
    COMMAND gzip -9nf ${PROJECT_BINARY_DIR}/clr.1
    DEPENDS clr_cli VERBATIM)
  add_custom_target(clr_man ALL DEPENDS ${PROJECT_BINARY_DIR}/clr.1.gz)
  install(FILES ${PROJECT_BINARY_DIR}/clr.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT program)
else()
  message(STATUS "clr: no help2man, so no man page (scripts/setup.sh installs help2man)")
endif()

if(TARGET clr_python)
  # Debian's python3 reads /usr/lib/python3/dist-packages.
  set(CLR_PYTHON_INSTALL_DIR lib/python3/dist-packages CACHE STRING "Where the Python module is installed")
  install(TARGETS clr_python LIBRARY DESTINATION ${CLR_PYTHON_INSTALL_DIR}/clr COMPONENT python)
  install(FILES ${PROJECT_SOURCE_DIR}/python/clr/__init__.py ${PROJECT_SOURCE_DIR}/python/clr_torch.py
          DESTINATION ${CLR_PYTHON_INSTALL_DIR}/clr COMPONENT python)
endif()

set(CPACK_PACKAGE_NAME clr)
set(CPACK_PACKAGE_VENDOR "the clr developers")
set(CPACK_PACKAGE_CONTACT "clr developers <clr@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "continual learning by Channel-wise Lightweight Reprogramming (CLR) of a frozen CNN, on LibTorch")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # the program's libraries, as dpkg-shlibdeps finds them
# The headers need the -dev packages of what the library uses.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libtorch-dev, nlohmann-json3-dev, libtomlplusplus-dev, libssl-dev, zlib1g-dev, libsqlite3-dev, libpng-dev, libwebp-dev, libturbojpeg0-dev, libmicrohttpd-dev")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3-torch")
include(CPack)
